// PayEdge reference web app: the accounting-integration pages of the platform, calling only the public
// PayEdge Connect HTTP API from this page's own origin (so every call is a CORS call with a preflight).
// No framework, no build step: a hash router, a DOM helper and one function per page.

const TOKEN_KEY = "payedge.token";
const FLASH_KEY = "payedge.flash";
const POLL_MS = 700;
const POLL_LIMIT = 180;

const SOFTWARE_NOTES = {
  quickbooks: "Intuit QuickBooks Online — bills and vendors, updates by webhook.",
  xero: "Xero — bills and contacts, updates by webhook; one grant can reach several organisations.",
  sage: "Sage Accounting — purchase invoices and contacts, synced on a schedule.",
};
const STATUS_LABELS = {
  authorizing: "Waiting for authorisation",
  choosing_tenant: "Choose the organisation",
  mapping_required: "Accept the account mapping",
  connected: "Connected",
  reauthorization_required: "Reauthorisation required",
  disconnected: "Disconnected",
};
const CALLBACK_FAILURES = {
  provider_error: "The accounting software did not grant access (the authorisation was cancelled or refused).",
  invalid_state: "This authorisation link has expired or was already used. Start again with Add connection.",
  missing_code: "The accounting software sent no authorisation code. Start again with Add connection.",
  invalid_code: "The accounting software refused the authorisation code. Start again with Add connection.",
  tenant_mismatch: "You authorised a different organisation than the one this connection belongs to; nothing changed.",
  storage_error: "The connection could not be saved. Try again in a moment.",
};

const state = { config: null, token: sessionStorage.getItem(TOKEN_KEY) };

// ------------------------------------------------------------------------------------------ helpers

/** el("tag.class", {attributes, onclick...}, ...children): a DOM element; strings become text nodes. */
function el(spec, attributes = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag);
  if (classes.length) node.className = classes.join(" ");
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function page(...children) {
  const main = document.getElementById("page");
  main.replaceChildren(...children.flat().filter(Boolean));
  return main;
}

function flash(message, kind = "notice") {
  const box = document.getElementById("flash");
  box.replaceChildren(message ? el(`div.${kind}`, { role: kind === "problem" ? "alert" : "status" }, message) : "");
}

/** A message for the next page (navigating clears the current one). */
function flashNext(message, kind = "notice") {
  sessionStorage.setItem(FLASH_KEY, JSON.stringify({ message, kind }));
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString("en-CA", { dateStyle: "medium", timeStyle: "short" });
}

function money(currency, amount) {
  return `${currency} ${Number(amount).toLocaleString("en-CA", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

function badge(status, label) {
  return el(`span.badge.${status}`, { "data-status": status }, label || STATUS_LABELS[status] || status);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.title || body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(state.config.apiUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    // The browser hides why (network down, or a CORS refusal); say what it can.
    throw new ApiError(0, { title: "The PayEdge Connect API could not be reached", detail: String(error) });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { title: `HTTP ${response.status}`, detail: text };
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** A problem document (type, title, status, detail, errors[{field, message}]) as the user sees it. */
function problem(error) {
  if (!(error instanceof ApiError)) return el("div.problem", { role: "alert" }, el("strong", {}, String(error)));
  const body = error.body || {};
  const title = body.title || body.message || "Request failed";
  const fields = (body.errors || []).map((item) => el("li", { "data-field": item.field }, `${item.field}: ${item.message}`));
  return el(
    "div.problem",
    { role: "alert", "data-problem-status": error.status },
    el("strong", {}, title),
    error.status ? ` (${error.status})` : "",
    body.detail ? el("p", {}, body.detail) : null,
    fields.length ? el("ul", {}, fields) : null,
    error.status === 401 ? el("p", {}, el("a", { href: "#/signin" }, "Sign in again")) : null,
  );
}

async function guarded(container, work) {
  try {
    return await work();
  } catch (error) {
    container.append(problem(error));
    return undefined;
  }
}

async function poll(read, settled) {
  for (let attempt = 0; attempt < POLL_LIMIT; attempt += 1) {
    const value = await read();
    if (settled(value)) return value;
    await sleep(POLL_MS);
  }
  throw new Error("Still not finished; refresh the page later.");
}

// ------------------------------------------------------------------------------------------ shared parts

function lastSyncLine(lastSync) {
  if (!lastSync) return "Not synced yet";
  return [
    `${lastSync.outcome} ${when(lastSync.finishedAt)}`,
    ` · ${lastSync.openBills} unpaid bills · ${lastSync.vendorsNeedingAttention} vendors need attention`,
  ].join("");
}

function syncCounts(run) {
  const c = run.counts;
  return (
    `${c.billsNew} new, ${c.billsChanged} changed, ${c.billsClosed} closed, ${c.billsUnchanged} unchanged bills · ` +
    `${c.vendorsNew} new, ${c.vendorsChanged} changed vendors · ${c.documentsStored} documents · ` +
    `${run.providerCalls} calls to the accounting software`
  );
}

/** The Sync button and what it shows: the run's progress while it runs, then its outcome. */
function syncControl(connection, onFinished) {
  const output = el("div.outcome", { "data-sync-output": connection.connectionId });
  const button = el(
    "button.primary",
    {
      type: "button",
      "data-action": "sync",
      onclick: async () => {
        button.disabled = true;
        output.replaceChildren(el("span", {}, "Starting sync…"));
        try {
          const showProgress = (current) =>
            output.replaceChildren(
              el("progress", {}),
              el("div", { "data-sync-progress": true }, `Sync running (${current.mode || "starting"}): ${syncCounts(current)}`),
            );
          // 202 with the run (a second request while one runs gets that one)
          const started = await api("POST", `/connections/${connection.connectionId}/sync`);
          showProgress(started);
          const run = await poll(
            () => api("GET", started.statusUrl),
            (current) => {
              if (current.outcome === "running") showProgress(current);
              return current.outcome !== "running";
            },
          );
          output.replaceChildren(
            el(
              "div",
              { "data-sync-outcome": run.outcome },
              "Sync ",
              badge(run.outcome),
              ` ${run.mode} sync finished ${when(run.finishedAt)}: ${syncCounts(run)}`,
            ),
            run.detail ? el("p.muted", {}, run.detail) : "",
            run.errors.length
              ? el("ul.attention", {}, run.errors.map((item) => el("li", {}, `Skipped ${item.entity} ${item.providerId}: ${item.reason}`)))
              : "",
          );
          if (onFinished) onFinished(run);
        } catch (error) {
          output.replaceChildren(problem(error));
        } finally {
          button.disabled = false;
        }
      },
    },
    "Sync",
  );
  return [button, output];
}

async function listConnections() {
  const listed = await api("GET", "/connections");
  return listed.connections;
}

function connectionPicker(connections, selectedId, onChange) {
  return el(
    "label",
    {},
    "Accounting software ",
    el(
      "select",
      { name: "connection", onchange: (event) => onChange(event.target.value) },
      connections.map((c) =>
        el("option", { value: c.connectionId, selected: c.connectionId === selectedId }, `${c.accountingSoftware} · ${c.organisationName || "—"}`),
      ),
    ),
  );
}

function routeParams() {
  const [, query = ""] = location.hash.split("?");
  return new URLSearchParams(query);
}

// ------------------------------------------------------------------------------------------ pages

async function signInPage() {
  const pasted = el("textarea", { name: "token", placeholder: "Paste a user JWT (make dev prints one)" });
  const errors = el("div");
  const finish = (token) => {
    state.token = token.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    const next = sessionStorage.getItem("payedge.next") || "#/integrations";
    sessionStorage.removeItem("payedge.next");
    location.hash = next;
  };
  page(
    el("h1", {}, "Sign in"),
    el("p.muted", {}, "The platform's sign-in gives the user a JWT; locally, make dev's identity provider issues it."),
    el(
      "div.card",
      {},
      state.config.devLogin
        ? el(
            "button.primary",
            {
              type: "button",
              "data-action": "dev-login",
              onclick: async () => {
                const response = await fetch("/dev/login", { method: "POST" });
                if (!response.ok) {
                  errors.replaceChildren(el("div.problem", {}, `Dev sign-in failed: ${response.status}`));
                  return;
                }
                finish((await response.json()).token);
              },
            },
            "Sign in as the local user (dev only)",
          )
        : null,
      el("h2", { style: "margin-top:14px" }, "Or use a token"),
      pasted,
      el("div.actions", {}, el("button", { type: "button", onclick: () => pasted.value.trim() && finish(pasted.value) }, "Use this token")),
      errors,
    ),
  );
}

async function integrationsPage() {
  const list = el("div", { id: "connections" });
  page(
    el("p.breadcrumb", {}, "Manage profile › Third-party integrations"),
    el("h1", {}, "Third-party integrations"),
    el("p.muted", {}, "Connect your accounting software: unpaid bills and vendors come to PayEdge, and every bill you pay here is recorded there."),
    el("div.toolbar", {}, el("a.button.primary", { href: "#/integrations/add", "data-action": "add-connection" }, "Add connection")),
    list,
  );
  const connections = await guarded(list, listConnections);
  if (!connections) return;
  if (!connections.length) {
    list.append(el("div.card.muted", {}, "No accounting software is connected yet."));
    return;
  }
  for (const connection of connections) list.append(connectionCard(connection));
}

function connectionCard(connection) {
  const errors = el("div");
  const id = connection.connectionId;
  const actions = el("div.actions");
  if (connection.status === "connected") {
    actions.append(
      ...syncControl(connection, async () => {
        const shown = await api("GET", `/connections/${id}`);
        card.querySelector("[data-field=last-sync]").textContent = lastSyncLine(shown.lastSync);
      }),
    );
  }
  if (connection.status === "choosing_tenant") actions.append(el("a.button.primary", { href: `#/connections/${id}/organisation` }, "Choose organisation"));
  if (connection.status === "mapping_required") actions.append(el("a.button.primary", { href: `#/connections/${id}/mapping` }, "Review account mapping"));
  if (connection.status === "reauthorization_required") {
    actions.append(
      el(
        "button.primary",
        {
          type: "button",
          "data-action": "reconnect",
          onclick: () =>
            guarded(errors, async () => {
              const started = await api("POST", `/connections/${id}/reconnect`);
              location.assign(started.authorizationUrl);
            }),
        },
        "Reconnect",
      ),
    );
  }
  if (connection.status !== "disconnected") {
    const confirm = el(
      "button.danger",
      {
        type: "button",
        hidden: true,
        "data-action": "confirm-disconnect",
        onclick: () =>
          guarded(errors, async () => {
            await api("DELETE", `/connections/${id}`);
            flash(`${connection.accountingSoftware} disconnected. Its bills and vendors stay here, read-only.`);
            await integrationsPage();
          }),
      },
      `Yes, disconnect ${connection.accountingSoftware}`,
    );
    const ask = el(
      "button.danger",
      {
        type: "button",
        "data-action": "disconnect",
        onclick: () => {
          ask.hidden = true;
          confirm.hidden = false;
        },
      },
      "Disconnect",
    );
    actions.append(ask, confirm);
  }
  const mapping = connection.mapping;
  const card = el(
    "div.card",
    { "data-connection": id, "data-provider": connection.provider },
    el("h2", {}, connection.accountingSoftware, " ", badge(connection.status)),
    el(
      "dl.facts",
      {},
      el("dt", {}, "Organisation"),
      el("dd", { "data-field": "organisation" }, connection.organisationName || "—"),
      el("dt", {}, "Status"),
      el("dd", { "data-field": "status" }, STATUS_LABELS[connection.status] || connection.status),
      el("dt", {}, "Last sync"),
      el("dd", { "data-field": "last-sync" }, lastSyncLine(connection.lastSync)),
      mapping ? el("dt", {}, "Mapping accepted") : null,
      mapping ? el("dd", {}, `${when(mapping.acceptedAt)} · ${Object.keys(mapping.fundingSources).join(", ")}`) : null,
    ),
    connection.attention.length ? el("ul.attention", {}, connection.attention.map((text) => el("li", {}, text))) : null,
    actions,
    errors,
  );
  return card;
}

async function addConnectionPage() {
  const errors = el("div");
  const choices = el("div.choices", { role: "radiogroup", "aria-label": "Supported software" });
  const cont = el("button.primary", { type: "submit", disabled: true, "data-action": "continue" }, "Continue");
  const form = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const provider = new FormData(form).get("provider");
        cont.disabled = true;
        await guarded(errors, async () => {
          const started = await api("POST", "/connections", { provider });
          // The provider's secure page; it sends the browser back through the API's callback to this app.
          location.assign(started.authorizationUrl);
        });
        cont.disabled = false;
      },
    },
    choices,
    el("div.actions", {}, cont, el("a.button", { href: "#/integrations" }, "Cancel")),
  );
  page(
    el("p.breadcrumb", {}, "Manage profile › Third-party integrations › Add connection"),
    el("h1", {}, "Add connection"),
    el("p.muted", {}, "Choose your accounting software. Continue takes you to its secure page to authorise PayEdge."),
    form,
    errors,
  );
  const listed = await guarded(errors, () => api("GET", "/providers"));
  if (!listed) return;
  for (const provider of listed.providers) {
    choices.append(
      el(
        "label.choice",
        { "data-provider": provider.provider },
        el("input", { type: "radio", name: "provider", value: provider.provider, onchange: () => (cont.disabled = false) }),
        el("span", {}, el("strong", {}, provider.displayName), el("br"), el("span.muted", {}, SOFTWARE_NOTES[provider.provider] || "")),
      ),
    );
  }
}

async function organisationPage(connectionId) {
  const errors = el("div");
  const choices = el("div.choices", { role: "radiogroup", "aria-label": "Organisations" });
  const form = el(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        const tenantId = new FormData(form).get("tenant");
        if (!tenantId) return;
        guarded(errors, async () => {
          const chosen = await api("PUT", `/connections/${connectionId}/tenant`, { tenantId });
          location.hash = chosen.status === "mapping_required" ? `#/connections/${connectionId}/mapping` : "#/integrations";
        });
      },
    },
    choices,
    el("div.actions", {}, el("button.primary", { type: "submit", "data-action": "choose-organisation" }, "Continue")),
  );
  page(
    el("p.breadcrumb", {}, "Third-party integrations › Add connection"),
    el("h1", {}, "Choose the organisation"),
    el("p.muted", {}, "Your authorisation reaches several organisations. Choose the one whose bills PayEdge should pay."),
    form,
    errors,
  );
  const listed = await guarded(errors, () => api("GET", `/connections/${connectionId}/tenants`));
  if (!listed) return;
  for (const tenant of listed.tenants) {
    choices.append(
      el("label.choice", { "data-tenant": tenant.name }, el("input", { type: "radio", name: "tenant", value: tenant.tenantId }), el("strong", {}, tenant.name)),
    );
  }
}

function accountSelect(name, candidates, proposed, allowNone) {
  return el(
    "select",
    { name },
    allowNone || !candidates.length ? el("option", { value: "" }, allowNone ? "No fee account" : "No matching account") : null,
    candidates.map((candidate) =>
      el(
        "option",
        { value: candidate.accountId, selected: candidate.accountId === proposed },
        candidate.currency ? `${candidate.name} (${candidate.currency})` : candidate.name,
      ),
    ),
  );
}

async function mappingPage(connectionId) {
  const errors = el("div");
  const heading = el("h1", {}, "Account mapping");
  page(el("p.breadcrumb", {}, "Third-party integrations › Add connection"), heading, errors);
  const [connection, proposal] = (await guarded(errors, () =>
    Promise.all([api("GET", `/connections/${connectionId}`), api("GET", `/connections/${connectionId}/mapping`)]),
  )) || [];
  if (!proposal) return;
  heading.append(` — ${connection.accountingSoftware} · ${connection.organisationName}`);
  const rows = proposal.fundingSources.map((source) => [
    el("label", { for: `fs-${source.fundingSource}` }, `${source.name} (${source.currency})`),
    Object.assign(accountSelect(`fundingSource:${source.fundingSource}`, source.candidates, source.proposedAccountId, false), { id: `fs-${source.fundingSource}` }),
  ]);
  const fee = accountSelect("feeAccountId", proposal.feeAccount.candidates, proposal.feeAccount.proposedAccountId, true);
  const form = el(
    "form.grid",
    {
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const fundingSources = {};
        for (const [name, value] of data.entries()) {
          if (name.startsWith("fundingSource:") && value) fundingSources[name.slice("fundingSource:".length)] = value;
        }
        guarded(errors, async () => {
          const accepted = await api("PUT", `/connections/${connectionId}/mapping`, {
            accepted: true,
            fundingSources,
            feeAccountId: data.get("feeAccountId") || null,
          });
          flashNext(`${connection.accountingSoftware} is ${STATUS_LABELS[accepted.status].toLowerCase()}: ${connection.organisationName}`);
          location.hash = "#/integrations";
        });
      },
    },
    rows.flat(),
    el("label", {}, "Fees booked to"),
    fee,
    el("div.actions", {}, el("button.primary", { type: "submit", "data-action": "accept-mapping" }, "Accept"), el("a.button", { href: "#/integrations" }, "Later")),
  );
  page(
    el("p.breadcrumb", {}, "Third-party integrations › Add connection"),
    heading,
    el("p.muted", {}, "Where each payment made through PayEdge is recorded: a bank account for each funding source, and an account for fees."),
    el("div.card", {}, form),
    errors,
  );
}

async function dashboardPage() {
  const cards = el("div.cards", { id: "dashboard-cards" });
  page(el("h1", {}, "Dashboard"), cards);
  const connections = await guarded(cards, listConnections);
  if (!connections) return;
  const live = connections.filter((c) => c.status !== "disconnected");
  if (!live.length) {
    cards.append(el("div.card", {}, "No accounting software connected. ", el("a", { href: "#/integrations/add" }, "Add connection")));
    return;
  }
  for (const connection of live) {
    const card = el(
      "div.card",
      { "data-dashboard-card": connection.connectionId },
      el("h2", {}, "Accounting sync — ", connection.accountingSoftware, " ", badge(connection.status)),
      el("p", {}, connection.organisationName || "—"),
      el("p.muted", { "data-field": "last-sync" }, lastSyncLine(connection.lastSync)),
      el(
        "p",
        {},
        el("a", { href: `#/payables?connection=${connection.connectionId}` }, "Unpaid payables"),
        " · ",
        el("a", { href: `#/vendors?connection=${connection.connectionId}&tab=attention` }, "Vendors needing attention"),
      ),
    );
    if (connection.status === "connected") {
      const [button, output] = syncControl(connection);
      card.append(el("div.actions", {}, button), output);
    } else {
      card.append(el("p", {}, el("a", { href: "#/integrations" }, "Open Third-party integrations")));
    }
    cards.append(card);
  }
}

async function payablesPage() {
  const params = routeParams();
  const errors = el("div");
  const body = el("div");
  page(el("p.breadcrumb", {}, "Payments › Unpaid payables"), el("h1", {}, "Unpaid payables"), errors, body);
  const connections = await guarded(errors, listConnections);
  if (!connections) return;
  if (!connections.length) {
    body.append(el("div.card", {}, "Connect your accounting software to see its unpaid bills. ", el("a", { href: "#/integrations/add" }, "Add connection")));
    return;
  }
  const connection = connections.find((c) => c.connectionId === params.get("connection")) || connections[0];
  const status = params.get("status") || "open";
  const go = (changes) => {
    const next = new URLSearchParams({ connection: connection.connectionId, status, ...changes });
    location.hash = `#/payables?${next}`;
  };
  const table = el(
    "table",
    { id: "payables" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["Vendor", "Invoice number", "Due date", "Amount due", "Total", "Remittance note", "Accounting software", "Invoice document", ""].map((name) => el("th", {}, name)),
      ),
    ),
  );
  const rows = el("tbody");
  table.append(rows);
  const more = el("div.actions");
  body.append(
    el(
      "div.toolbar",
      {},
      connectionPicker(connections, connection.connectionId, (id) => go({ connection: id })),
      el(
        "div.tabs",
        { role: "tablist" },
        [
          ["open", "Open"],
          ["part_paid", "Part-paid"],
        ].map(([value, label]) => el("button", { type: "button", role: "tab", "aria-selected": String(value === status), onclick: () => go({ status: value }) }, label)),
      ),
    ),
    table,
    more,
  );
  const load = async (cursor) => {
    const query = new URLSearchParams({ status, limit: "25", ...(cursor ? { cursor } : {}) });
    const listed = await guarded(errors, () => api("GET", `/connections/${connection.connectionId}/payables?${query}`));
    if (!listed) return;
    if (!listed.payables.length && !cursor) rows.append(el("tr", {}, el("td.muted", { colspan: 9 }, "No unpaid bills.")));
    for (const payable of listed.payables) rows.append(...payableRows(connection, payable));
    more.replaceChildren(listed.nextCursor ? el("button", { type: "button", onclick: () => load(listed.nextCursor) }, "Load more") : "");
  };
  await load(null);
}

function payableRows(connection, payable) {
  const detail = el("tr.pay-row", { hidden: true }, el("td", { colspan: 9 }));
  const documentCell = el("td");
  if (payable.document) {
    const errors = el("span");
    documentCell.append(
      el(
        "a",
        {
          href: "#",
          "data-action": "invoice-document",
          onclick: (event) => {
            event.preventDefault();
            // The link is a short-lived presigned URL: ask for it when the user wants the document.
            guarded(errors, async () => {
              const link = await api("GET", `/connections/${connection.connectionId}/payables/${payable.billId}/document`);
              window.open(link.url, "_blank", "noopener");
            });
          },
        },
        payable.document.fileName || "Invoice document",
      ),
      errors,
    );
  } else {
    documentCell.append(el("span.muted", {}, "—"));
  }
  const row = el(
    "tr",
    { "data-bill": payable.billId, "data-currency": payable.currency },
    el("td", { "data-field": "vendor" }, payable.vendorName),
    el("td", { "data-field": "invoice-number" }, payable.invoiceNumber || "—"),
    el("td", { "data-field": "due-date" }, payable.dueDate || "—"),
    el("td.amount", { "data-field": "amount-due" }, money(payable.currency, payable.amountDue)),
    el("td.amount", {}, money(payable.currency, payable.totalAmount)),
    el("td", { "data-field": "remittance-note" }, payable.remittanceNote || "—"),
    el("td", { "data-field": "software" }, payable.accountingSoftware),
    documentCell,
    el(
      "td",
      {},
      el(
        "button.primary",
        {
          type: "button",
          "data-action": "pay",
          disabled: connection.status === "disconnected",
          onclick: () => {
            detail.hidden = !detail.hidden;
            if (!detail.hidden) detail.firstChild.replaceChildren(payForm(connection, payable));
          },
        },
        "Pay",
      ),
    ),
  );
  return [row, detail];
}

/** Stands in for the platform's own payment flow: submits the payment and shows its write-back outcome. */
function payForm(connection, payable) {
  const sources = Object.keys(connection.mapping?.fundingSources || {});
  const preferred = sources.find((id) => id.startsWith(payable.currency.toLowerCase())) || sources[0];
  const output = el("div.outcome");
  const today = new Date().toISOString().slice(0, 10);
  const form = el(
    "form.grid",
    {
      "data-pay-form": payable.billId,
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const optional = (name) => (data.get(name) ? String(data.get(name)) : null);
        const order = {
          paymentOrderNumber: `PO-WEB-${Date.now()}`,
          billId: payable.billId,
          vendorName: payable.vendorName,
          invoiceNumber: payable.invoiceNumber,
          currency: payable.currency,
          amount: String(data.get("amount")),
          feeAmount: optional("feeAmount"),
          exchangeRate: optional("exchangeRate"),
          fundingSource: String(data.get("fundingSource")),
          remittanceNote: optional("remittanceNote"),
          paymentStatus: "completed",
          paymentDate: String(data.get("paymentDate")),
        };
        submit.disabled = true;
        output.replaceChildren(el("span", {}, "Submitting payment…"));
        try {
          const accepted = await api("POST", `/connections/${connection.connectionId}/payments`, order);
          output.replaceChildren(el("span", {}, `Payment ${accepted.paymentOrderNumber} `, badge(accepted.status), " — writing back…"));
          const settled = await poll(
            () => api("GET", accepted.statusUrl),
            (current) => !["received", "posting"].includes(current.status),
          );
          output.replaceChildren(
            el(
              "div",
              { "data-payment-outcome": settled.status },
              `Payment ${settled.paymentOrderNumber}: `,
              badge(settled.status),
              settled.providerPaymentId ? ` recorded in ${payable.accountingSoftware} as payment ${settled.providerPaymentId}` : "",
              settled.providerFeeId ? `, fee ${settled.providerFeeId}` : "",
              settled.reason ? el("p", {}, `${settled.reasonCode}: ${settled.reason}`) : null,
            ),
          );
        } catch (error) {
          output.replaceChildren(problem(error));
        } finally {
          submit.disabled = false;
        }
      },
    },
    el("label", {}, "Amount"),
    el("input", { name: "amount", value: payable.amountDue, inputmode: "decimal" }),
    el("label", {}, "Funding source"),
    el("select", { name: "fundingSource" }, sources.map((id) => el("option", { value: id, selected: id === preferred }, id))),
    el("label", {}, "Fee (optional)"),
    el("input", { name: "feeAmount", inputmode: "decimal" }),
    el("label", {}, "Exchange rate (foreign currency)"),
    el("input", { name: "exchangeRate", inputmode: "decimal", placeholder: "home currency per 1 " + payable.currency }),
    el("label", {}, "Payment date"),
    el("input", { name: "paymentDate", type: "date", value: today }),
    el("label", {}, "Remittance note"),
    el("input", { name: "remittanceNote", value: payable.remittanceNote || "" }),
    el("div.actions", {}, el("button.primary", { type: "submit", "data-action": "submit-payment" }, `Pay ${money(payable.currency, payable.amountDue)}`)),
  );
  const submit = form.querySelector("button[type=submit]");
  return el("div", {}, el("h2", {}, `Pay ${payable.vendorName} — invoice ${payable.invoiceNumber || payable.billId}`), el("p.muted", {}, "Stands in for the platform's payment: the payment is submitted to PayEdge Connect, which records it in the accounting software."), form, output);
}

async function vendorsPage() {
  const params = routeParams();
  const errors = el("div");
  const body = el("div");
  page(el("p.breadcrumb", {}, "Vendors › Manage vendors"), el("h1", {}, "Manage vendors"), errors, body);
  const connections = await guarded(errors, listConnections);
  if (!connections) return;
  if (!connections.length) {
    body.append(el("div.card", {}, "Connect your accounting software to see its vendors."));
    return;
  }
  const connection = connections.find((c) => c.connectionId === params.get("connection")) || connections[0];
  const tab = params.get("tab") || "all";
  const go = (changes) => {
    location.hash = `#/vendors?${new URLSearchParams({ connection: connection.connectionId, tab, ...changes })}`;
  };
  const attentionQuery = "attentionRequired=true&limit=100";
  const query = tab === "attention" ? attentionQuery : "limit=100";
  const [listed, attention] = (await guarded(errors, () =>
    Promise.all([
      api("GET", `/connections/${connection.connectionId}/vendors?${query}`),
      api("GET", `/connections/${connection.connectionId}/vendors?${attentionQuery}`),
    ]),
  )) || [];
  if (!listed) return;
  const count = el("span", { "data-attention-count": true }, String(attention.vendors.length));
  const rows = el("tbody");
  const table = el(
    "table",
    { id: "vendors" },
    el("thead", {}, el("tr", {}, ["Name", "Email", "Address", "Changed in the accounting software", ""].map((name) => el("th", {}, name)))),
    rows,
  );
  for (const vendor of listed.vendors) {
    const address = vendor.address
      ? [vendor.address.line1, vendor.address.line2, vendor.address.city, vendor.address.region, vendor.address.postalCode, vendor.address.country].filter(Boolean).join(", ")
      : "—";
    const rowErrors = el("div");
    const row = el(
      "tr",
      { "data-vendor": vendor.vendorId },
      el("td", { "data-field": "name" }, vendor.name, vendor.attentionRequired ? el("span", {}, " ", badge("needs_attention", "New or changed")) : null),
      el("td", {}, vendor.email || "—"),
      el("td", {}, address),
      el("td", {}, when(vendor.providerUpdatedAt)),
      el(
        "td",
        {},
        vendor.attentionRequired
          ? el(
              "button",
              {
                type: "button",
                "data-action": "acknowledge",
                onclick: () =>
                  guarded(rowErrors, async () => {
                    const acknowledged = await api("POST", `/connections/${connection.connectionId}/vendors/${vendor.vendorId}/acknowledgement`);
                    flash(`${acknowledged.name} acknowledged: it leaves Attention required until it changes again.`);
                    if (tab === "attention") row.remove();
                    else row.querySelector("[data-action=acknowledge]").remove();
                    count.textContent = String(Number(count.textContent) - 1);
                  }),
              },
              "Acknowledge",
            )
          : null,
        rowErrors,
      ),
    );
    rows.append(row);
  }
  if (!listed.vendors.length) rows.append(el("tr", {}, el("td.muted", { colspan: 5 }, tab === "attention" ? "No vendor needs attention." : "No vendors.")));
  body.append(
    el(
      "div.toolbar",
      {},
      connectionPicker(connections, connection.connectionId, (id) => go({ connection: id })),
    ),
    el(
      "div.tabs",
      { role: "tablist" },
      el("button", { type: "button", role: "tab", "aria-selected": String(tab === "all"), onclick: () => go({ tab: "all" }) }, "All vendors"),
      el("button", { type: "button", role: "tab", "data-tab": "attention", "aria-selected": String(tab === "attention"), onclick: () => go({ tab: "attention" }) }, "Attention required (", count, ")"),
    ),
    tab === "attention" ? el("p.muted", {}, "New vendors, and vendors whose details changed in the accounting software since you last checked them.") : null,
    table,
  );
}

// ------------------------------------------------------------------------------------------ router

const ROUTES = [
  [/^#\/signin$/, signInPage],
  [/^#\/integrations\/add$/, addConnectionPage],
  [/^#\/integrations$/, integrationsPage],
  [/^#\/connections\/([^/]+)\/organisation$/, organisationPage],
  [/^#\/connections\/([^/]+)\/mapping$/, mappingPage],
  [/^#\/dashboard$/, dashboardPage],
  [/^#\/payables$/, payablesPage],
  [/^#\/vendors$/, vendorsPage],
];

async function render() {
  document.body.dataset.ready = "";
  const hash = location.hash.split("?")[0] || "#/integrations";
  if (!state.token && hash !== "#/signin") {
    sessionStorage.setItem("payedge.next", location.hash || "#/integrations");
    location.hash = "#/signin";
    return;
  }
  for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("current", hash.startsWith(`#/${link.dataset.nav}`));
  document.getElementById("gear-menu").hidden = true;
  const pending = sessionStorage.getItem(FLASH_KEY);
  if (pending) {
    const { message, kind } = JSON.parse(pending);
    sessionStorage.removeItem(FLASH_KEY);
    flash(message, kind);
  }
  for (const [pattern, show] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      document.body.dataset.page = show.name;
      await show(...match.slice(1).map(decodeURIComponent));
      document.body.dataset.ready = show.name;
      return;
    }
  }
  location.hash = "#/integrations";
}

/** The OAuth callback brings the browser back here with ?outcome=&connectionId=: continue where it says.
 * An approved consent comes back as `authorized` with a single-use completion code in the fragment: this
 * signed-in user redeems it (only the user who started the connection can), which completes it. */
async function followCallback() {
  const query = new URLSearchParams(location.search);
  let outcome = query.get("outcome");
  if (!outcome) return;
  const id = query.get("connectionId");
  const completionCode = new URLSearchParams(location.hash.slice(1)).get("completionCode");
  // The code must not linger in the address bar or the history.
  history.replaceState(null, "", `${location.pathname}#/integrations`);
  if (outcome === "authorized") {
    try {
      const redeemed = await api("POST", `/connections/${encodeURIComponent(id)}/authorization`, { completionCode });
      outcome = redeemed.outcome;
    } catch (error) {
      const detail = error instanceof ApiError ? error.body?.detail || error.message : String(error);
      flashNext(`The connection could not be completed: ${detail}`, "problem");
      return;
    }
  }
  let next = "#/integrations";
  if (outcome === "choosing_tenant") next = `#/connections/${id}/organisation`;
  else if (outcome === "mapping_required") next = `#/connections/${id}/mapping`;
  else if (outcome === "connected") flashNext("Reconnected: your accounting software is connected again.");
  else flashNext(CALLBACK_FAILURES[outcome] || `The connection failed (${outcome}).`, "problem");
  history.replaceState(null, "", `${location.pathname}${next}`);
}

async function start() {
  state.config = await (await fetch("/config.json")).json();
  await followCallback();
  const gear = document.getElementById("gear");
  gear.addEventListener("click", () => {
    const menu = document.getElementById("gear-menu");
    menu.hidden = !menu.hidden;
    gear.setAttribute("aria-expanded", String(!menu.hidden));
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    location.hash = "#/signin";
  });
  window.addEventListener("hashchange", () => {
    flash("");
    render();
  });
  await render();
}

start();

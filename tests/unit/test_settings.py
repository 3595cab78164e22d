import pytest

from payedge_connect.settings import ConnectSettings, SettingsError, SyncSettings, load_settings

COMMON = {
    "RECORDS_TABLE_NAME": "records",
    "SECRET_NAME_PREFIX": "payedge/",
    "STACK_KMS_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/abc",
    "BUSINESS_ID_CLAIM": "business_id",
    "PROVIDER_BASE_URLS": "{}",
    "XERO_SCOPE_SET": "granular",
    "XERO_DAILY_CALL_LIMIT": "5000",
    "FUNDING_SOURCES": '[{"id": "cad-operating", "name": "CAD operating account", "currency": "CAD"}]',
    "API_BASE_URL": "https://connect.example",
}


@pytest.fixture(autouse=True)
def fresh_settings(clean_environment: None):
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def test_a_missing_variable_fails_at_start_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given every common variable but not the sync queue's
    for name, value in COMMON.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOCUMENTS_BUCKET_NAME", "docs")
    # When the sync function reads its settings
    # Then it fails, naming exactly the missing variable
    with pytest.raises(SettingsError) as error:
        load_settings(SyncSettings)
    assert "SYNC_QUEUE_URL is not set" in str(error.value)
    assert "DOCUMENTS_BUCKET_NAME" not in str(error.value)


def test_an_empty_variable_is_not_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in COMMON.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECORDS_TABLE_NAME", "")
    with pytest.raises(SettingsError) as error:
        load_settings(ConnectSettings)
    assert "RECORDS_TABLE_NAME" in str(error.value)


def test_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a complete environment read once
    for name, value in COMMON.items():
        monkeypatch.setenv(name, value)
    first = load_settings(ConnectSettings)
    # When the environment changes later in the same process
    monkeypatch.setenv("RECORDS_TABLE_NAME", "another")
    # Then the function keeps the values it started with
    assert load_settings(ConnectSettings) is first
    assert first.records_table_name == "records"


def test_funding_sources_must_be_valid_json(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in COMMON.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FUNDING_SOURCES", '[{"id": "cad", "currency": "cad"}]')
    with pytest.raises(SettingsError) as error:
        load_settings(ConnectSettings)
    assert "FUNDING_SOURCES" in str(error.value)

import os
import stat

import pytest

from dockcast.config import ConfigError, NodeConfig, describe, dev_credentials, load_config


def test_defaults_match_the_protocol():
    c = load_config({}, environ={})
    assert (c.host, c.port, c.data_dir, c.redis) == ("127.0.0.1", 8765, "./data", None)
    assert c.ice_servers == ()
    assert c.announced_ice_addresses == ["127.0.0.1"]  # the listen address when it is an IP


def test_precedence_file_env_flags(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('port = 9000\nregion = "us-west"\nice_servers = ["stun:127.0.0.1:3478"]\n')
    env = {"DOCKCAST_CONFIG": str(f), "DOCKCAST_REGION": "cn-south", "DOCKCAST_AUTO_CREATE_ROOMS": "off"}
    c = load_config({"port": 9100}, environ=env)
    assert (c.port, c.region, c.auto_create_rooms) == (9100, "cn-south", False)
    assert c.ice_servers == ("stun:127.0.0.1:3478",)


@pytest.mark.parametrize("flags,env,message", [
    ({"port": 0}, {}, "port"),
    ({}, {"DOCKCAST_PORT": "eighty"}, "port"),
    ({"api_key": "k"}, {}, "api_key and api_secret"),
    ({"log_format": "xml"}, {}, "log_format"),
    ({}, {"DOCKCAST_AUTO_CREATE_ROOMS": "maybe"}, "auto_create_rooms"),
])
def test_bad_values_are_named(flags, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(flags, environ=env)


def test_unknown_file_setting_refused(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_config({"config": str(f)}, environ={})


def test_ice_address_list_and_wildcard_host():
    assert NodeConfig(ice_address="127.0.0.1, ::1").announced_ice_addresses == ["127.0.0.1", "::1"]
    assert NodeConfig(host="0.0.0.0").announced_ice_addresses == []


def test_dev_credentials_are_private_and_stable(tmp_path):
    c = NodeConfig(data_dir=str(tmp_path / "d"))
    filled, generated = dev_credentials(c)
    assert generated and filled.api_key == "devkey" and len(filled.api_secret) > 30
    mode = stat.S_IMODE(os.stat(tmp_path / "d" / "dev-credentials.json").st_mode)
    assert mode == 0o600
    again, _ = dev_credentials(c)
    assert again.api_secret == filled.api_secret  # tokens survive a restart
    assert "api_secret" not in describe(filled)
    given, generated = dev_credentials(NodeConfig(api_key="k", api_secret="s"))
    assert not generated and given.api_secret == "s"


def test_plugin_tables_give_plugins_and_their_options(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('''
[plugins.webhooks]
endpoints = [{url = "http://127.0.0.1:9/hook", secret_env = "HOOK_SECRET", secret = "inline-0123456789abc"}]
retry = {max_attempts = 3}

[plugins."acme.wms:AuditPlugin"]
level = 2
''')
    c = load_config({"config": str(f)}, environ={})
    assert c.plugins == ("webhooks", "acme.wms:AuditPlugin")
    assert c.plugin_options["webhooks"]["retry"] == {"max_attempts": 3}
    assert c.plugin_options["acme.wms:AuditPlugin"] == {"level": 2}
    # the startup log names the variable but never shows a secret
    logged = describe(c)["plugin_options"]["webhooks"]["endpoints"][0]
    assert logged["secret"] == "<redacted>" and logged["secret_env"] == "HOOK_SECRET"
    # a list still works, and DOCKCAST_PLUGINS replaces the names, not the options
    f.write_text('plugins = ["acme.wms:AuditPlugin"]\n')
    assert load_config({"config": str(f)}, environ={}).plugins == ("acme.wms:AuditPlugin",)


@pytest.mark.parametrize("text,message", [
    ('[plugins]\nwebhooks = 3\n', "plugins.webhooks"),
    ('plugin_options = {}\n', "unknown settings"),
])
def test_bad_plugin_settings_are_named(tmp_path, text, message):
    f = tmp_path / "node.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config({"config": str(f)}, environ={})


def test_rate_and_retention_settings():
    c = load_config({}, environ={"DOCKCAST_REQUEST_RATE": "500", "DOCKCAST_MESSAGE_MAX_AGE_S": "0",
                                 "DOCKCAST_MESSAGE_DROP_UNACKED": "yes"})
    assert (c.request_rate, c.request_burst, c.message_max_age_s, c.message_drop_unacked) == \
        (500.0, 100, 0.0, True)
    with pytest.raises(ConfigError, match="request_rate"):
        load_config({}, environ={"DOCKCAST_REQUEST_RATE": "0"})
    with pytest.raises(ConfigError, match="message_max_count"):
        load_config({}, environ={"DOCKCAST_MESSAGE_MAX_COUNT": "-1"})

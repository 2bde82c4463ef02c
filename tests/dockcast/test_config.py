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
    ({"trunk_address": "127.0.0.1"}, {}, "trunk_address"),
    ({}, {"DOCKCAST_TRUNK_ADDRESS": "relay:port"}, "trunk_address"),
    ({"trunk_address": "127.0.0.1:0"}, {}, "trunk_address"),
    ({"region_map": "10.0.0.0/8"}, {}, "region_map"),
    ({}, {"DOCKCAST_REGION_MAP": "not-a-net=asia"}, "region_map"),
    ({"region_map": "10.0.0.0/8="}, {}, "region_map"),
])
def test_bad_values_are_named(flags, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(flags, environ=env)


def test_trunk_address_names_where_other_nodes_send():
    assert load_config({}, environ={}).trunk_address is None
    assert load_config({"trunk_address": "[::1]:9002"}, environ={}).trunk_address == "[::1]:9002"
    assert load_config({}, environ={"DOCKCAST_TRUNK_ADDRESS": "10.0.0.5:4001"}).trunk_address == "10.0.0.5:4001"


def test_region_map_gives_a_source_address_its_region(tmp_path):
    c = load_config({"region_map": "10.8.0.0/16=asia, 10.0.0.0/8=us-west,2001:db8::/32=eu"}, environ={})
    assert c.region_for("10.8.3.4") == "asia"  # the most specific network
    assert c.region_for("10.9.0.1") == "us-west"
    assert c.region_for("2001:db8::7") == "eu"
    assert c.region_for("192.0.2.1") is None and c.region_for("not an address") is None
    f = tmp_path / "node.toml"
    f.write_text('[region_map]\n"203.0.113.0/24" = "asia"\n')
    assert load_config({"config": str(f)}, environ={}).region_for("203.0.113.9") == "asia"
    assert load_config({}, environ={}).region_for("10.8.3.4") is None


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


# ---- API secrets, several keys, token lifetime ------------------------------------------

S1, S2, S3 = "a" * 32, "b" * 40, "c" * 48


@pytest.mark.parametrize("secret", ["", "s", "s" * 31, "é" * 15 + "s"], ids=["empty", "1", "31", "31 bytes"])
def test_a_short_or_empty_api_secret_is_refused(secret):
    with pytest.raises(ConfigError, match="api_secret.*32 bytes"):
        load_config({"api_key": "k", "api_secret": secret}, environ={})


def test_a_32_byte_secret_is_enough():
    assert load_config({"api_key": "k", "api_secret": "é" * 16}, environ={}).keys == {"k": "é" * 16}


def test_api_keys_from_a_flag_the_environment_and_a_file(tmp_path):
    c = load_config({}, environ={"DOCKCAST_API_KEYS": f"old:{S1}, new:{S2}"})
    assert c.api_keys == {"old": S1, "new": S2} and c.keys == {"old": S1, "new": S2}
    c = load_config({"api_keys": f"new:{S2}", "api_key": "k", "api_secret": S3}, environ={})
    assert c.keys == {"k": S3, "new": S2}
    f = tmp_path / "node.toml"
    f.write_text(f'[api_keys]\nold = "{S1}"\n"with:colon" = "{S2}"\n')
    c = load_config({"config": str(f)}, environ={})
    assert c.keys == {"old": S1, "with:colon": S2}
    # a secret may hold a colon: the first one splits
    assert load_config({"api_keys": f"k:{S1}:x"}, environ={}).api_keys == {"k": S1 + ":x"}


@pytest.mark.parametrize("value, message", [
    (f"k:{S1},broken", "api_keys.*key:secret"),
    (f":{S1}", "api_keys.*key:secret"),
    ("k:short", "api_keys.*'k'.*32 bytes"),
    (f"k:{S1},k:{S2}", "api_keys.*'k' twice"),
])
def test_bad_api_keys_are_named(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"api_keys": value}, environ={})


def test_api_keys_and_api_key_must_not_disagree():
    with pytest.raises(ConfigError, match="'k'.*two secrets"):
        load_config({"api_keys": f"k:{S1}", "api_key": "k", "api_secret": S2}, environ={})
    assert load_config({"api_keys": f"k:{S1}", "api_key": "k", "api_secret": S1}, environ={}).keys == {"k": S1}


def test_several_keys_need_no_dev_credentials(tmp_path):
    c = load_config({"api_keys": f"k:{S1}", "data_dir": str(tmp_path / "d")}, environ={})
    assert dev_credentials(c) == (c, False)
    assert not (tmp_path / "d" / "dev-credentials.json").exists()


def test_max_token_ttl():
    assert load_config({}, environ={}).max_token_ttl_s == 24 * 3600
    assert load_config({}, environ={"DOCKCAST_MAX_TOKEN_TTL_S": "600"}).max_token_ttl_s == 600
    with pytest.raises(ConfigError, match="max_token_ttl_s"):
        load_config({}, environ={"DOCKCAST_MAX_TOKEN_TTL_S": "-1"})


def test_node_wide_caps(tmp_path):
    c = load_config({}, environ={})
    assert (c.max_rooms, c.max_participants_per_room, c.max_tracks_per_participant,
            c.max_subscriptions_per_participant, c.max_mlines_per_offer) == (1000, 100, 8, 500, 16)
    f = tmp_path / "node.toml"
    f.write_text("max_rooms = 10\nmax_mlines_per_offer = 0\n")
    c = load_config({}, environ={"DOCKCAST_CONFIG": str(f), "DOCKCAST_MAX_TRACKS_PER_PARTICIPANT": "2"})
    assert (c.max_rooms, c.max_mlines_per_offer, c.max_tracks_per_participant) == (10, 0, 2)
    for name in ("max_rooms", "max_participants_per_room", "max_tracks_per_participant",
                 "max_subscriptions_per_participant", "max_mlines_per_offer"):
        with pytest.raises(ConfigError, match=name):
            load_config({}, environ={f"DOCKCAST_{name.upper()}": "-1"})
        with pytest.raises(ConfigError, match=name):
            load_config({}, environ={f"DOCKCAST_{name.upper()}": "many"})


def test_describe_shows_key_names_never_secrets():
    c = load_config({"api_keys": f"old:{S1},new:{S2}", "api_key": "k", "api_secret": S3}, environ={})
    described = describe(c)
    assert described["api_keys"] == ["k", "new", "old"]
    assert not any(s in repr(described) for s in (S1, S2, S3))


def test_describe_redacts_urls_in_redis_and_plugin_options(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('[[plugins.webhooks.endpoints]]\n'
                 'url = "http://hook-user:hook-pw@127.0.0.1:1/hook?token=abc123&x=1"\n'
                 'secret_env = "HOOK_SECRET"\n')
    c = load_config({"config": str(f), "redis": "redis://:redis-pw@127.0.0.1:6379/0"}, environ={})
    described = describe(c)
    assert described["redis"] == "redis://:<redacted>@127.0.0.1:6379/0"
    endpoint = described["plugin_options"]["webhooks"]["endpoints"][0]
    assert endpoint["url"] == "http://<redacted>@127.0.0.1:1/hook?token=<redacted>&x=<redacted>"
    assert not any(s in repr(described) for s in ("redis-pw", "hook-user", "hook-pw", "abc123"))
    assert c.redis == "redis://:redis-pw@127.0.0.1:6379/0"  # the config itself keeps them

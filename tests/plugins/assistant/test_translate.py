"""The translation client against a small OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from plugins.assistant.errors import AssistantError
from plugins.assistant.translate import Translator, translation_fields, translator_from_options


class Endpoint(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``: answers "<TRANSLATED> <text>" and records requests."""

    seen: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - the http.server name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        if type(self).status != 200:
            self.send_error(type(self).status)
            return
        answer = json.dumps({"choices": [{"message": {
            "role": "assistant", "content": f"<TRANSLATED> {body['messages'][-1]['content']}"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    Endpoint.seen, Endpoint.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_a_caption_is_translated_by_the_endpoint_with_the_key(endpoint):
    translator = Translator(endpoint, "sk-test-secret", model="local-model")
    fields = await translation_fields(translator, "我的包裹在哪里", "zh")
    assert fields == {"translation": {"lang": "en", "text": "<TRANSLATED> 我的包裹在哪里"}}
    [(path, auth, body)] = Endpoint.seen
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test-secret"
    assert body["model"] == "local-model" and "into English" in body["messages"][0]["content"]


async def test_an_endpoint_that_fails_leaves_the_caption_untranslated_and_says_why(endpoint):
    Endpoint.status = 500
    fields = await translation_fields(Translator(endpoint, "sk-test-secret"), "where is it", "en")
    assert fields["translation"] is None and fields["translation_unavailable"] is True
    assert "HTTP 500" in fields["translation_error"] and "sk-test" not in fields["translation_error"]


async def test_without_an_endpoint_translation_is_unavailable_not_guessed():
    assert await translation_fields(None, "where is it", "en") == \
        {"translation": None, "translation_unavailable": True}


async def test_an_endpoint_that_does_not_answer_is_named():
    translator = Translator("http://127.0.0.1:9/v1", timeout_s=2)  # discard port: refused
    fields = await translation_fields(translator, "where is it", "en")
    assert "127.0.0.1:9" in fields["translation_error"]


def test_the_key_is_never_shown_and_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DC_TEST_TRANSLATE_KEY", "sk-from-env")
    translator = translator_from_options("http://127.0.0.1:1/v1", key_env="DC_TEST_TRANSLATE_KEY")
    assert "sk-from-env" not in repr(translator) and "***" in repr(translator)
    assert translator_from_options(None) is None
    with pytest.raises(AssistantError, match="DC_TEST_MISSING"):
        translator_from_options("http://127.0.0.1:1/v1", key_env="DC_TEST_MISSING")
    with pytest.raises(AssistantError, match="http"):
        Translator("ftp://example.invalid")

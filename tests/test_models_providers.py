"""Provider profiles: checking the pipeline's section, presets, keys (environment, keyring), Azure."""

from __future__ import annotations

import keyring
import keyring.backend
import pytest

from batchgrid.core.util.errors import PipelineError, StepError
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.providers import PRESETS, resolve_profile, validate_providers
from batchgrid.core.providers.profiles import api_key
from models_support import KEY, prompts

LLM = {"type": "llm", "prompt": "{text}", "stream": False}


def test_presets_cover_the_common_servers():
    assert set(PRESETS) == {"openai", "azure", "ollama", "lmstudio", "vllm", "llamacpp", "openrouter"}
    assert resolve_profile("local", {"local": {"preset": "ollama"}}).base_url == "http://127.0.0.1:11434/v1"
    assert resolve_profile("lm", {"lm": {"preset": "lmstudio"}}).base_url == "http://127.0.0.1:1234/v1"
    assert resolve_profile("or", {"or": {"preset": "openrouter"}}).api_key_env == "OPENROUTER_API_KEY"


def test_a_profile_named_like_a_preset_gets_that_preset():
    assert resolve_profile("ollama", {"ollama": {"model": "llama3.1"}}).preset.name == "ollama"


def test_no_profiles_means_openai_from_the_environment():
    profile = resolve_profile("", {}, environ={"OPENAI_BASE_URL": "http://proxy.local/v1/"})
    assert (profile.name, profile.base_url, profile.api_key_env) == ("openai", "http://proxy.local/v1", "OPENAI_API_KEY")
    assert resolve_profile("", {}, environ={}).base_url == "https://api.openai.com/v1"


def test_a_blank_provider_means_the_first_profile():
    providers = {"work": {"preset": "vllm", "base_url": "http://gpu:8000/v1"}, "home": {"preset": "ollama"}}
    assert resolve_profile("", providers).name == "work"


def test_the_providers_section_is_checked_with_locations():
    problems = validate_providers({
        "a": {"preset": "olama", "rpm": -1, "base_url": "localhost:11434", "colour": "red"},
        "b": {"preset": "azure"},
        "c": {"api_key_env": "sk-abc123", "headers": {"X-Team": 5}, "max_in_flight": True},
        "d": "ollama",
        "e": {"headers": {"X-Token": "${TOKEN"}},
    })
    assert problems == [
        "providers.a.preset: 'olama' is not one of: openai, azure, ollama, lmstudio, vllm, llamacpp, openrouter",
        "providers.a.rpm: must be more than 0",
        "providers.a.base_url: 'localhost:11434' must start with http:// or https://",
        "providers.a.colour: unknown field; fields are: preset, base_url, model, embedding_model, api_key_env, "
        "keyring_service, keyring_user, headers, api_version, max_in_flight, rpm, tpm, timeout, idle_timeout, "
        "batch_size",
        "providers.b.base_url: missing; Azure OpenAI needs its endpoint, e.g. https://YOUR-RESOURCE.openai.azure.com",
        "providers.c.api_key_env: 'sk-abc123' is not an environment variable name (name the variable that holds "
        "the key, not the key)",
        "providers.c.headers: every value must be text",
        "providers.c.max_in_flight: must be a whole number of requests",
        "providers.d: must be an object (preset, base_url, model, api_key_env, ...)",
        "providers.e.headers.X-Token: broken environment variable at position 1; write ${NAME}",
    ]


def test_a_pipeline_with_a_bad_profile_does_not_load():
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "providers": {"x": {"preset": "nope"}}, "steps": []})
    assert info.value.messages()[0].startswith("providers.x.preset: 'nope' is not one of")


def test_a_key_in_a_profile_is_refused():
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "providers": {"x": {"api_key": "sk-abcdefghijklmnopqrstuvwx"}}, "steps": []})
    assert "pipeline files never hold keys" in info.value.messages()[0]


def test_steps_must_name_an_existing_profile_and_have_a_model():
    pipeline = Pipeline.from_dict({
        "version": 1,
        "providers": {"local": {"preset": "ollama"}},
        "steps": [{"type": "llm", "prompt": "{a}", "provider": "locla", "output": "x1"},
                  {"type": "llm", "prompt": "{a}", "provider": "local", "output": "x2"},
                  {"type": "parallel", "branches": {"b": [{"type": "embed", "source": "a"}]}},
                  {"type": "llm", "prompt": "{a}", "model": "llama3.1", "output": "x3"}],
    })
    assert [str(p) for p in pipeline.problems(["a"])] == [
        "steps[0].provider: no provider profile named 'locla'; profiles are: local",
        "steps[1].model: missing; provider 'local' has no default model, so name the model here or set "
        "providers.local.model",
        "steps[2].branches.b[0].model: missing; provider 'local' has no default embedding_model, so name the model "
        "here or set providers.local.embedding_model",
    ]


def test_the_new_run_settings_are_declared_and_checked():
    pipeline = Pipeline.from_dict({"version": 1, "settings": {"use_cache": False, "budget": 2.5}, "steps": []})
    assert pipeline.settings["use_cache"] is False and pipeline.settings["budget"] == 2.5
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "settings": {"budget": -1}, "steps": []})
    assert info.value.messages() == ["settings.budget: must be at least 0"]


# ---- keys ---------------------------------------------------------------------------------------
class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self, entries):
        super().__init__()
        self.entries = entries

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


@pytest.fixture
def memory_keyring():
    before = keyring.get_keyring()
    store = MemoryKeyring({})
    keyring.set_keyring(store)
    yield store
    keyring.set_keyring(before)


async def test_a_key_from_the_os_keyring_is_used(models, memory_keyring):
    memory_keyring.set_password("batchgrid-test", "me", KEY)
    providers = {"kr": {"base_url": models.server.base_url, "keyring_service": "batchgrid-test",
                        "keyring_user": "me", "model": "gpt-4o-mini"}}
    run = await models.run([LLM], prompts(2), providers=providers)
    assert run.outputs("answer") == ["echo: row 0", "echo: row 1"]


def test_an_empty_keyring_entry_says_so(memory_keyring):
    profile = resolve_profile("kr", {"kr": {"keyring_service": "svc", "keyring_user": "me"}})
    with pytest.raises(StepError, match="no API key for provider 'kr': the keyring entry svc/me is empty or does not exist"):
        api_key(profile, environ={})


def test_without_a_keyring_backend_the_message_says_so_and_the_environment_still_works():
    before = keyring.get_keyring()
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    try:
        profile = resolve_profile("kr", {"kr": {"keyring_service": "svc", "api_key_env": "MY_KEY"}})
        with pytest.raises(StepError, match="keyring entry svc/kr cannot be used: no keyring backend is available"):
            api_key(profile, environ={})
        assert api_key(profile, environ={"MY_KEY": "k"}) == "k"
    finally:
        keyring.set_keyring(before)


def test_local_servers_need_no_key():
    assert api_key(resolve_profile("o", {"o": {"preset": "ollama"}}), environ={}) is None


async def test_a_local_server_never_gets_the_openai_key(models, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-openai-key-123456")
    models.server.configure(api_key=None)
    providers = {"local": {"preset": "llamacpp", "base_url": models.server.base_url, "model": "m"}}
    run = await models.run([LLM], prompts(1), providers=providers)
    assert run.statuses() == ["done"]
    assert not any("sk-secret" in a for a in models.server.stats.authorizations)


async def test_azure_profiles_use_deployments_api_version_and_the_api_key_header(models, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    providers = {"az": {"preset": "azure", "base_url": models.server.url, "model": "my-deployment"}}
    run = await models.run([LLM, {"type": "embed", "source": "text", "model": "emb-deployment"}], prompts(2),
                           providers=providers)
    assert run.statuses() == ["done", "done"]
    assert run.outputs("answer") == ["echo: row 0", "echo: row 1"]
    assert KEY in models.server.stats.authorizations  # sent as "api-key", Azure's header


async def test_extra_headers_are_sent_with_secrets_from_the_environment(models):
    headers = {"X-Team": "data", "X-Token": "${BATCHGRID_TEST_KEY}"}
    run = await models.run([LLM], prompts(1), providers=models.providers(headers=headers))
    assert run.statuses() == ["done"]
    assert models.server.stats.last_headers["x-team"] == "data"
    assert models.server.stats.last_headers["x-token"] == KEY


async def test_a_header_naming_a_missing_variable_fails_every_row_in_words(models):
    run = await models.run([LLM], prompts(2), providers=models.providers(headers={"X-Token": "${NOT_SET_ANYWHERE}"}))
    assert set(run.errors()) == {"environment variable NOT_SET_ANYWHERE is not set (the pipeline reads it as "
                                 "${NOT_SET_ANYWHERE})"}

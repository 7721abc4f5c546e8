"""Multi-turn chats (OpenAI messages and ShareGPT conversations, tool calls included): every trained
span is exactly an assistant turn and its end-of-turn token, whatever the chat template; the
tokens equal the tokenizer's own rendering of the whole conversation."""

import copy
import json
from importlib import resources

import pytest

from tunelab.config import load_config
from tunelab.config.base import ConfigError
from tunelab.config.data import BUILTIN_CHAT_TEMPLATES, TaskConfig
from tunelab.data import DataError, build_task, prepare
from tunelab.data.conversation import TOOLS_PROMPT
from tunelab.data.templates import builtin_source
from tunelab.data.tokenize import IGNORE_INDEX

from data_helpers import make_config

GLAIVE = "instructions/llamafactory_glaive_toolcall_en_demo.json"
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "tool"}
TOOLS = [{"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
CHAT = [  # OpenAI messages: a system prompt, a tool call and its result, three assistant turns
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Hi there!"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "content": '{"temp": 21}'},
    {"role": "assistant", "content": " It is 21 degrees in Paris. "},
]
CALL_TEXT = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
# the template's own special tokens, added to a copy of SmolLM2's tokenizer
SPECIAL = {"llama-3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
           "gemma": ["<start_of_turn>", "<end_of_turn>"],
           "phi-3": ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]}
EOT = {"chatml": "<|im_end|>", "llama-3": "<|eot_id|>", "gemma": "<end_of_turn>", "phi-3": "<|end|>"}
TRIMS = ("llama-3", "gemma")  # templates that write each message's content stripped


def spans(ex) -> list[list[int]]:
    """Runs of trained tokens in label_ids."""
    out, run = [], []
    for token, label in zip(ex.input_ids, ex.label_ids):
        if label != IGNORE_INDEX:
            run.append(token)
        elif run:
            out, run = out + [run], []
    return out + [run] if run else out


def chat_task(records, **extra) -> TaskConfig:
    return TaskConfig.model_validate({"name": "c", "kind": "chat", "source": {"records": records},
                                      "ratios": {"train": 1, "validation": 0, "test": 0}, **extra})


def with_tokens(tokenizer, names):
    tok = copy.deepcopy(tokenizer)
    if names:
        tok.add_special_tokens({"additional_special_tokens": names})
    return tok


def assert_whole_rendering(tok, ex, messages, template=None, after="\n", same_tokens=True):
    """The example is the tokenizer's rendering of the whole conversation up to the final
    end-of-turn token, and its prompt the text generation starts from. Each piece (text before an
    answer, the answer) is tokenised on its own; with most templates that equals tokenising the
    whole text (same_tokens); where the whole text would merge a header's end and an answer's start
    into one token, the pieces keep them apart (the mask stays exact)."""
    text = tok.apply_chat_template(messages, tokenize=False, chat_template=template)
    assert tok.decode(ex.input_ids, clean_up_tokenization_spaces=False) + after == text
    prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True, chat_template=template)
    assert ex.prompt_text == prompt
    if same_tokens:
        assert ex.prompt_ids == tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids[:len(ex.input_ids)] == ex.input_ids
        assert tok.decode(ids[len(ex.input_ids):]) == after


def test_glaive_sharegpt_trains_every_assistant_turn_exactly(shared_data, tokenizer):
    records = json.loads((shared_data / GLAIVE).read_text())[:40]
    task = TaskConfig.model_validate({"name": "glaive", "kind": "chat", "source": str(shared_data / GLAIVE),
                                      "limit": 40})
    data = build_task(task, tokenizer, max_length=4096, leak_check="off")  # the file repeats some chats
    examples = [ex for split in data.splits.values() for ex in split]
    assert len(examples) == 40 and data.chat_template["applied"] and data.chat_template["end_of_turn"] == "<|im_end|>"
    multi = 0
    for ex in examples:
        record = records[ex.source_index]
        turns = [m for m in record["conversations"] if SHAREGPT_ROLES[m["from"]] == "assistant"]
        got = spans(ex)
        assert len(got) == len(turns)  # every gpt and function_call turn, nothing else
        assert [tokenizer.decode(s) for s in got] == [m["value"] + "<|im_end|>" for m in turns]
        multi += len(turns) > 1
        # the same tokens as SmolLM2's own template on the whole conversation (tools in the system message)
        tools = json.loads(record["tools"]) if record["tools"] else []
        listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        system = [{"role": "system", "content": TOOLS_PROMPT.format(tools=listed)}]
        messages = (system if tools else []) + [{"role": SHAREGPT_ROLES[m["from"]], "content": m["value"]}
                                                for m in record["conversations"]]
        assert_whole_rendering(tokenizer, ex, messages)
        assert ex.target_text == turns[-1]["value"] and ex.input_ids == ex.prompt_ids + ex.target_ids
        assert ex.prompt_text.endswith("<|im_start|>assistant\n")
    assert multi > 25


@pytest.mark.parametrize("name", BUILTIN_CHAT_TEMPLATES)
def test_every_builtin_template_masks_exactly_the_assistant_turns(name, tokenizer, tmp_path):
    tok = with_tokens(tokenizer, SPECIAL.get(name))
    task = chat_task([{"messages": CHAT}])
    data = build_task(task, tok, tmp_path, chat_template=name)
    ex = data.splits["train"][0]
    eot = EOT.get(name, tok.eos_token)
    contents = ["Hello! How can I help?", CALL_TEXT, " It is 21 degrees in Paris. "]
    if name in TRIMS:
        contents = [c.strip() for c in contents]
    assert [tok.decode(s) for s in spans(ex)] == [c + eot for c in contents]
    assert data.chat_template == {"applied": True, "requested": True, "template": name,
                                  "sha256": data.chat_template["sha256"], "end_of_turn": eot}
    # the whole rendering, the tool call written as its JSON text
    messages = [{"role": m["role"], "content": CALL_TEXT if m["content"] is None else m["content"]} for m in CHAT]
    tail = tok.apply_chat_template(messages, tokenize=False, chat_template=builtin_source(name))
    tail = tail[tail.rindex(eot) + len(eot):]
    # Tokenising the whole text would merge across two answer boundaries here: "\n\n" + "Hello"
    # (llama-3) and "[/INST]" + '{"name"' -> "]{" (mistral), a token half header, half answer
    assert_whole_rendering(tok, ex, messages, builtin_source(name), after=tail,
                           same_tokens=name not in ("llama-3", "mistral"))


def test_official_gemma_template_from_a_jinja_file(tokenizer, tmp_path):
    # Gemma's own template (no system role, strict user/model alternation), given as a file
    gemma = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
             "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
             "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
             "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
             "{% else %}{% set role = message['role'] %}"
             "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
             "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
    (tmp_path / "gemma.jinja").write_text(gemma)
    tok = with_tokens(tokenizer, SPECIAL["gemma"])
    turns = [{"role": "user", "content": "One?"}, {"role": "assistant", "content": "1"},
             {"role": "user", "content": "Two?"}, {"role": "assistant", "content": "2"}]
    cfg = make_config(tmp_path, [{"name": "c", "kind": "chat", "source": {"records": [{"messages": turns}, {
        "messages": CHAT}]}, "ratios": {"train": 1, "validation": 0, "test": 0}}],
        chat_template="gemma.jinja", on_error="skip")
    data = prepare(cfg, tok)
    ex, = data.tasks["c"].splits["train"]
    assert [tok.decode(s) for s in spans(ex)] == ["1<end_of_turn>", "2<end_of_turn>"]
    assert_whole_rendering(tok, ex, turns, gemma)
    assert tok.chat_template == gemma  # prepare() set the choice on the tokenizer a run saves
    assert "System role not supported" in data.report["skipped"][0]  # the template's own refusal, per record


def test_train_on_last_and_per_message_weights(tokenizer):
    def trained(records, **extra):
        ex = build_task(chat_task(records, **extra), tokenizer).splits["train"][0]
        return [tokenizer.decode(s) for s in spans(ex)]

    assert trained([{"messages": CHAT}], train_on="last") == [" It is 21 degrees in Paris. <|im_end|>"]
    weighted = [dict(m) for m in CHAT]
    weighted[2]["weight"] = 0
    weighted[6]["train"] = False
    assert trained([{"messages": weighted}]) == [CALL_TEXT + "<|im_end|>"]
    sharegpt = [{"from": "human", "value": "a?"}, {"from": "gpt", "value": "A", "weight": 1},
                {"from": "human", "value": "b?"}, {"from": "gpt", "value": "B"}]
    assert trained([{"conversations": sharegpt}], train_on="last") == ["A<|im_end|>", "B<|im_end|>"]
    ex = build_task(chat_task([{"conversations": sharegpt[:3] + [{**sharegpt[3], "weight": 0}]}]),
                    tokenizer).splits["train"][0]
    assert ex.target_text == "B" and all(t == IGNORE_INDEX for t in ex.label_ids[-len(ex.target_ids):])
    with pytest.raises(ConfigError, match="'train_on' applies to kind chat only"):
        load_config(data={"data": {"tasks": [{"name": "q", "kind": "qa", "source": [{"question": "q", "answer": "a"}],
                                              "train_on": "last"}]}})


@pytest.mark.parametrize("message, error", [
    ({"from": "robot", "value": "x"}, r"\.from must be one of human, user, gpt"),
    ({"text": "x"}, r" has neither 'role' \(OpenAI messages\) nor 'from' \(ShareGPT\)"),
    ({"role": "assistant", "content": "x", "weight": 0.5}, r"\.weight must be 0 or 1"),
    ({"role": "user", "content": "x", "train": True}, r": only assistant messages can be trained"),
])
def test_bad_messages_are_named(message, error, tokenizer):
    records = [{"messages": [{"role": "user", "content": "hi"}, message, {"role": "assistant", "content": "ok"}]}]
    with pytest.raises(DataError, match=r"records\[0\]: field 'messages\[1\]'" + error):
        build_task(chat_task(records), tokenizer)


def test_a_template_that_writes_tools_and_tool_calls_gets_them(tokenizer):
    # Hermes/Qwen-style: tools in the system turn, calls in <tool_call> tags, written by the template
    template = (
        "{%- if tools %}{{ '<|im_start|>system\\nTools: ' }}{% for t in tools %}{{ t | tojson }}{% endfor %}"
        "{{ '<|im_end|>\\n' }}{% endif %}"
        "{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.tool_calls %}"
        "{% for c in m.tool_calls %}{{ '<tool_call>' + c.function | tojson + '</tool_call>' }}{% endfor %}"
        "{% else %}{{ m.content }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
        "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    records = [{"messages": CHAT[1:], "tools": TOOLS}]
    ex = build_task(chat_task(records), tok).splits["train"][0]
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>'
    assert [tok.decode(s) for s in spans(ex)][1] == call
    assert ex.prompt_text.startswith('<|im_start|>system\nTools: {"name": "get_weather"')


def test_templates_that_rewrite_earlier_turns_are_refused(tokenizer):
    tok = copy.deepcopy(tokenizer)  # an answer is written differently once another turn follows it
    tok.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content }}"
                         "{% if not loop.last %}{{ ' (earlier)' }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with pytest.raises(DataError, match=r"records\[0\]: message 1: the chat template renders .*\(train_on: last\)"):
        build_task(chat_task([{"messages": CHAT[1:4] + [CHAT[6]]}]), tok)


def test_plain_format_multi_turn_ends_each_trained_answer_with_eos(tokenizer):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    turns = [{"role": "user", "content": "One?"}, {"role": "assistant", "content": "1"},
             {"role": "user", "content": "Two?"}, {"role": "assistant", "content": "2"}]
    ex = build_task(chat_task([{"messages": turns}]), plain).splits["train"][0]
    eos = plain.eos_token
    assert plain.decode(ex.input_ids) == f"One?\n1{eos}\n\nTwo?\n2{eos}"
    assert [plain.decode(s) for s in spans(ex)] == [f"1{eos}", f"2{eos}"]
    assert ex.prompt_text == f"One?\n1{eos}\n\nTwo?\n"


def test_truncation_keeps_labels_aligned_and_the_final_answer_whole(tokenizer):
    turns = [{"role": "user", "content": "word " * 60}, {"role": "assistant", "content": "first answer " * 10},
             {"role": "user", "content": "Next?"}, {"role": "assistant", "content": "Last."}]
    full = build_task(chat_task([{"messages": turns}]), tokenizer, max_length=4096).splits["train"][0]
    cut = build_task(chat_task([{"messages": turns}]), tokenizer, max_length=40).splits["train"][0]
    assert cut.truncated and len(cut.input_ids) == 40 and len(cut.label_ids) == 40
    assert cut.input_ids == full.input_ids[-40:] and cut.label_ids == full.label_ids[-40:]
    assert tokenizer.decode(spans(cut)[-1]) == "Last.<|im_end|>"


def test_chat_template_choice_is_checked_when_the_config_is_read(tmp_path, tokenizer):
    shipped = resources.files("tunelab.data.templates").iterdir()
    names = sorted(f.name[:-len(".jinja")] for f in shipped if f.name.endswith(".jinja"))
    assert names == sorted(BUILTIN_CHAT_TEMPLATES)
    with pytest.raises(ConfigError, match=r"true or false .*the template itself with data.chat_template: chatml"):
        load_config(data={"data": {"tasks": [{"name": "c", "kind": "chat", "source": [{"messages": CHAT}],
                                              "chat_template": "chatml"}]}})
    with pytest.raises(ConfigError, match="unknown chat template 'llama3'; did you mean 'llama-3'"):
        load_config(data={"data": {"chat_template": "llama3"}})
    assert load_config(data={"data": {"chat_template": "tpl/mine.jinja"}}).data.chat_template == "tpl/mine.jinja"
    cfg = make_config(tmp_path, [{"name": "c", "kind": "chat", "source": {"records": [{"messages": CHAT}]}}],
                      chat_template="missing.jinja")
    with pytest.raises(DataError, match="missing.jinja does not exist"):
        prepare(cfg, copy.deepcopy(tokenizer))
    # a template that needs a token this tokenizer lacks is refused, not trained as text pieces
    with pytest.raises(DataError, match=r"data.chat_template llama-3: answers end with '<\|eot_id\|>'"):
        build_task(chat_task([{"messages": CHAT}]), tokenizer, chat_template="llama-3")


def test_user_jinja_chat_templates_stay_sandboxed(tmp_path, tokenizer):
    (tmp_path / "evil.jinja").write_text("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(DataError, match="not allowed in a sandboxed template"):
        build_task(chat_task([{"messages": CHAT}]), tokenizer, tmp_path, chat_template="evil.jinja")
    (tmp_path / "broken.jinja").write_text("{% for m in messages %}{{ m.content }}")
    with pytest.raises(DataError, match="broken.jinja: template syntax error on line 1"):
        build_task(chat_task([{"messages": CHAT}]), tokenizer, tmp_path, chat_template="broken.jinja")


def test_not_applied_is_stated(tokenizer):
    data = build_task(chat_task([{"messages": CHAT}], chat_template=False), tokenizer)
    assert data.chat_template == {"applied": False, "requested": False, "template": None, "sha256": None,
                                  "end_of_turn": tokenizer.eos_token}

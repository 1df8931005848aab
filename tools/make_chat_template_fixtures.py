#!/usr/bin/env python3
"""Reference outputs for src/formats/chat_template.c (tests/test_chat_template.c reads them).

Renders every template below over every conversation below, with add_generation_prompt False and
True, using jinja2 configured the way transformers configures it, and writes
tests/fixtures/chat_template/cases.json:

    {"templates":     {name: {"source": str, "bos_token": str, "eos_token": str, "origin": str}},
     "conversations": {name: [message, ...]},
     "cases": [{"template": name, "conversation": name, "add_generation_prompt": bool,
                "expected": str or null, "error": str or null, "error_type": str or null}]}

A case whose rendering raises has "expected": null and "error" = str(exception) (the C side must
fail with a message that contains it).

How transformers renders (src/transformers/utils/chat_template_utils.py, `_compile_jinja_template`
and `render_jinja_template`; processing_utils.py `ProcessorMixin.apply_chat_template`), written down
here because this script re-creates it without importing transformers:
  * jinja2 >= 3.1, `jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    extensions=[AssistantTracker, jinja2.ext.loopcontrols])`; autoescape off, keep_trailing_newline
    off, default Undefined (not StrictUndefined).
  * AssistantTracker adds the `{% generation %}...{% endgeneration %}` block tag; outside of
    return_assistant_tokens_mask it renders its body unchanged (re-created below as GenerationTag).
  * filters["tojson"] is replaced by json.dumps(x, ensure_ascii=False, indent=indent,
    separators=separators, sort_keys=sort_keys) (no HTML escaping).
  * globals["raise_exception"](message) raises jinja2.exceptions.TemplateError(message);
    globals["strftime_now"](fmt) = datetime.now().strftime(fmt).
  * render(messages=chat, tools=None, documents=None, add_generation_prompt=..., **special_tokens_map)
    where the processor passes `{**self.tokenizer.special_tokens_map, **kwargs}`; the messages are
    passed as the user gave them (content either a string or a list of {"type": "text", "text": ...}
    / {"type": "image"} dicts). Only bos_token and eos_token are passed here; the C API has the same two.

Template origins (exact texts found in public sources; see "origin" in the output):
  * llava-hf/llava-v1.6-mistral-7b-hf chat_template.json (current, '</s> ') and its older revision
    (the literal '<\\s> ' typo fixed by the repo's PR #43).
  * llava-hf/llava-v1.6-vicuna-7b-hf / llava-1.5 chat_template.json (with {% generation %}).
  * transformers' LLaVA-NeXT(-Video) conversion script: chat_vicuna (system text) and chat_yi
    (ChatML, used for the 34B models).
  * llava-hf/llama3-llava-next-8b-hf chat_template.
  * llava-onevision conversion script (ChatML with video and {% generation %}).
  * "edited_*": hand-written variants in the style of users' fine-tuned copies, exercising the rest of
    the supported Jinja subset (multi-line layout with trim/lstrip, whitespace control, set,
    namespace, loop.*, slicing, filters, tests, string content).

Usage: python3 tools/make_chat_template_fixtures.py   (needs only jinja2; writes the file in place)
"""
import json
import os
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "chat_template", "cases.json")


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}body{% endgeneration %} renders body (transformers' AssistantTracker when inactive)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


MISTRAL = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'][0]['text'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'][0]['text'] + '</s> '}}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
MISTRAL_OLD = MISTRAL.replace("'</s> '", "'<\\\\s> '")

VICUNA_HUB = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

VICUNA_CONVERT = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ message['content'][0]['text'] }}"
    "{% else %}"
    "{{ message['role'].upper() + ': '}}"
    "{% endif %}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}"
    "{% endfor %}"
    "{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}"
    "{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ 'ASSISTANT:' }}"
    "{% endif %}"
)

CHATML_34B = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}"
    "{% endfor %}"
    "{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}"
    "{% endfor %}"
    "{{'<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)

LLAMA3 = (
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\\n' + content['text'] + '<|eot_id|>' }}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

ONEVISION = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A Mistral template as a user might re-indent it in a .jinja file: multi-line, relying on
# trim_blocks/lstrip_blocks and {%- -%}, system prompt folded into the first user turn, role
# alternation checked with loop.index0, string or list content.
EDITED_MISTRAL = """{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set system_message = messages[0]['content'] -%}
    {%- else -%}
        {%- set system_message = messages[0]['content'][0]['text'] -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{ bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['content'] is string %}
        {%- set text = message['content'] %}
    {%- else %}
        {%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\\n') %}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' }}
        {%- else %}
            {{- '[INST] ' }}
        {%- endif %}
        {%- if message['content'] is not string %}
            {%- for part in message['content'] if part['type'] == 'image' %}<image>
{% endfor %}
        {%- endif %}
        {{- text | trim + ' [/INST]' }}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + text | trim + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, got ' ~ message['role'] ~ '!') }}
    {%- endif %}
{%- endfor %}
"""

# Kitchen sink: exercises the parts of the subset the LLaVA templates do not (namespace, loop
# attributes, filters, tests, literals, membership, inline if, break/continue, printing values).
EDITED_KITCHEN = """{# header comment, trimmed away #}
{% set ns = namespace(images=0, turns=0, last_role='') %}
{% for message in messages %}
  {% set ns.turns = ns.turns + 1 %}
  {% if message.content is string %}
    {% set parts = [{'type': 'text', 'text': message.content}] %}
  {% else %}
    {% set parts = message.content %}
  {% endif %}
  {% for p in parts %}
    {% if p.type == 'image' %}{% set ns.images = ns.images + 1 %}{% endif %}
  {% endfor %}
{{ loop.index }}/{{ loop.length }} {{ message['role'] | upper }}{{ ' (first)' if loop.first }}{{ ' (last)' if loop.last else '' }}
  {% for p in parts %}
    {% if p.type == 'image' %}
    [img #{{ loop.index0 }}]
    {% elif p.text is defined and p.text | length > 0 %}
    text={{ p.text | trim | tojson }} len={{ p.text | length }} words={{ p.text.split() | length }}
    {% endif %}
  {% endfor %}
  {%- if message.role not in ['user', 'assistant', 'system'] %} unknown-role{% endif %}
  {% set ns.last_role = message.role %}
{% endfor %}
images={{ ns.images }} turns={{ ns.turns }} last={{ ns.last_role ~ '!' }} {{ ns.turns is even }} {{ (ns.images * 2 + 1) // 2 }} {{ 7 % 3 }} {{ -7 // 2 }} {{ 2 ** 5 }}
{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{{ ',' if not loop.last }}{% endfor %}

{{ [1, 'two', none, true, false] }} {{ {'k': 'v', 'n': 3} }} {{ (1, 2) }} {{ 'a' 'b' }} {{ "it's" }} {{ 'say "hi"' }}
{{ messages | length }} {{ messages[-1].role | title }} {{ 'Hello World'.lower() }} {{ '  pad  ' | trim | length }}
{{ 'x' in 'xyz' }} {{ 'q' not in ['a', 'b'] }} {{ 'role' in messages[0] }} {{ messages[0].get('nope', 'dflt') }} {{ messages[0].get('nope') }}
{{ undefined_var | default('fallback') }} {{ undefined_var is defined }} {{ add_generation_prompt is sameas true }} {{ tools is none }}
{{ messages | map(attribute='role') | join('|') }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'equalto', 'user') | list | length }}
{{ 'abc'[1] }}{{ 'abc'[-1] }}{{ 'abcdef'[1:4] }}{{ 'abcdef'[::2] }} {{ [1, 2, 3][::-1] }} {{ 'héllo wörld' | title }} {{ 'ÉCOLE' | lower }} {{ 'straße' | length }}
{{ messages[0] | tojson }}
{{ {'b': [1, 2.5, true, none], 'a': 'x\\ny'} | tojson(indent=2, sort_keys=true) }}
{{ 1.0 }} {{ 7 / 2 }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 10 / 4 * 2 }} {{ 3 > 2 > 1 }} {{ 'b' > 'a' }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }}
{%- if add_generation_prompt %}

ASSISTANT:{% endif %}
"""

# ChatML for string content (Qwen-style), image counting through a namespace, default system prompt.
EDITED_CHATML = """{%- set image_count = namespace(value=0) -%}
{%- for message in messages -%}
{%- if loop.first and message['role'] != 'system' -%}
<|im_start|>system
You are a helpful assistant.<|im_end|>
{% endif -%}
<|im_start|>{{ message['role'] }}
{% if message['content'] is string -%}
{{ message['content'] }}<|im_end|>
{% else -%}
{%- for content in message['content'] -%}
{%- if content['type'] == 'image' or 'image' in content -%}
{%- set image_count.value = image_count.value + 1 -%}
Picture {{ image_count.value }}: <image>
{% elif 'text' in content -%}
{{ content['text'] }}
{%- endif -%}
{%- endfor -%}
<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""

TEMPLATES = {
    "mistral": (MISTRAL, "<s>", "</s>", "llava-hf/llava-v1.6-mistral-7b-hf chat_template.json"),
    "mistral_old": (MISTRAL_OLD, "<s>", "</s>", "llava-hf/llava-v1.6-mistral-7b-hf chat_template.json before PR #43"),
    "vicuna": (VICUNA_HUB, "<s>", "</s>", "llava-hf/llava-v1.6-vicuna-7b-hf chat_template.json"),
    "vicuna_convert": (VICUNA_CONVERT, "<s>", "</s>", "transformers llava_next_video conversion script chat_vicuna"),
    "chatml_34b": (CHATML_34B, "<|startoftext|>", "<|im_end|>", "transformers llava_next_video conversion script chat_yi (34B)"),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llava-hf/llama3-llava-next-8b-hf chat_template"),
    "onevision": (ONEVISION, "<|endoftext|>", "<|im_end|>", "transformers llava_onevision conversion script"),
    "edited_mistral": (EDITED_MISTRAL, "<s>", "</s>", "hand-written (user-edited style)"),
    "edited_kitchen": (EDITED_KITCHEN, "<s>", "</s>", "hand-written (subset coverage)"),
    "edited_chatml": (EDITED_CHATML, "<s>", "</s>", "hand-written (Qwen-style string content)"),
}


def img():
    return {"type": "image"}


def txt(t):
    return {"type": "text", "text": t}


CONVERSATIONS = {
    "image_text": [{"role": "user", "content": [img(), txt("What is shown in this image?")]}],
    "text_only": [{"role": "user", "content": [txt("Tell me a joke.")]}],
    "two_images": [{"role": "user", "content": [img(), txt("Compare these two pictures."), img()]}],
    "system_user": [
        {"role": "system", "content": [txt("You are a helpful assistant.")]},
        {"role": "user", "content": [img(), txt("Describe the image.")]},
    ],
    "multi_turn": [
        {"role": "user", "content": [img(), txt("What is shown in this image?")]},
        {"role": "assistant", "content": [txt("A cat sitting on a sofa.")]},
        {"role": "user", "content": [txt("What color is it?")]},
    ],
    "assistant_answer": [
        {"role": "user", "content": [img(), txt("What is this?")]},
        {"role": "assistant", "content": [txt("this is a photo of Room.")]},
    ],
    "unicode": [
        {"role": "user", "content": [img(), txt("Qu'est-ce que c'est ? 这是什么？ 🐱\nÉcris\ten « français ».  ")]},
        {"role": "assistant", "content": [txt("Un chat — ünïcödé ✓")]},
        {"role": "user", "content": [txt("Straße / ΣΊΣΥΦΟΣ / \\n literal backslash-n")]},
    ],
    "text_parts": [{"role": "user", "content": [txt("First part. "), img(), txt("Second part.")]}],
    "empty_text": [{"role": "user", "content": [img(), txt("")]}],
    "invalid_role": [
        {"role": "user", "content": [txt("Call the tool.")]},
        {"role": "tool", "content": [txt("42")]},
    ],
    "string_content": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "  How are you?  "},
    ],
    "string_user_only": [{"role": "user", "content": "Just text, no parts."}],
}


def main():
    env = make_env()
    cases = []
    for tname, (src, bos, eos, _origin) in TEMPLATES.items():
        tmpl = env.from_string(src)
        for cname, msgs in CONVERSATIONS.items():
            for agp in (False, True):
                case = {"template": tname, "conversation": cname, "add_generation_prompt": agp,
                        "expected": None, "error": None, "error_type": None}
                try:
                    case["expected"] = tmpl.render(messages=json.loads(json.dumps(msgs)), tools=None, documents=None,
                                                   add_generation_prompt=agp, bos_token=bos, eos_token=eos)
                except Exception as e:  # the C side must fail too, with this message inside its own
                    case["error"] = str(e)
                    case["error_type"] = type(e).__name__
                cases.append(case)
    doc = {
        "generator": "tools/make_chat_template_fixtures.py",
        "jinja2_version": jinja2.__version__,
        "templates": {k: {"source": s, "bos_token": b, "eos_token": e, "origin": o} for k, (s, b, e, o) in TEMPLATES.items()},
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if c["error"] is not None)
    print(f"wrote {OUT}: {len(cases)} cases ({n_err} expected errors)")


if __name__ == "__main__":
    main()

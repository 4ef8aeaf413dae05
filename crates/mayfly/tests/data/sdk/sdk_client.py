"""A tool run under `mayfly run --inject openai,anthropic`: the official
SDKs, configured only by the variables Mayfly gives them, make a plain and
a streamed call each. Prints one JSON object with what they got.
"""

import json
import os

import anthropic
import openai

out = {
    "openai_key_var": os.environ.get("OPENAI_API_KEY", ""),
    "anthropic_key_var": os.environ.get("ANTHROPIC_API_KEY", ""),
    "openai_base_url": os.environ.get("OPENAI_BASE_URL", ""),
    "task": os.environ.get("MAYFLY_TASK_ID", ""),
}
client = openai.OpenAI(max_retries=0)
reply = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
)
out["openai"] = reply.choices[0].message.content
pieces = []
for chunk in client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
out["openai_stream"] = pieces

claude = anthropic.Anthropic(max_retries=0)
message = claude.messages.create(
    model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
)
out["anthropic"] = message.content[0].text
with claude.messages.stream(
    model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
) as stream:
    out["anthropic_stream"] = list(stream.text_stream)
print(json.dumps(out))

"""The ``tripwire`` Inspect model provider.

* ``tripwire/scripted-scheme`` and ``tripwire/scripted-honest`` act deterministically in every
  scenario (the family's plan for the sample); ``tripwire/scripted-conditional`` schemes only in
  treatment conditions and behaves in the control. They are the scorers' tests: every family's
  outcome scorer must give exactly 1 and 0 to the first two.
* ``tripwire/smollm2-135m`` (the embedded model), ``tripwire/<folder or .gguf>`` run a local
  causal LM through :mod:`tripwire.models`, greedy. Model args (``-M key=value``):

  - ``adapter``: a PEFT adapter folder; ``device``, ``dtype``; ``max_new_tokens`` (default 160).
  - ``steer``: ``concept:layer:strength`` (or several) amplifies (``+``) or suppresses (``-``) a
    shipped concept direction during generation.
  - ``whitebox``: shipped concepts (e.g. ``desperation,calm``) whose per-message z-scores are
    recorded in each assistant message's metadata (``metadata["tripwire"]``) and in the sample's
    ``metadata["internals"]`` (one row per message, ``{"message": index, ...}``), in any task.
  - ``detector``: ``PATH:LAYER`` of a saved detector, scored on every reply likewise.

  List-valued args take a list (``inspect eval -M whitebox=a,b``) or a ``,``/``;``-separated
  string; see :mod:`tripwire.behavior.local`. A prompt that does not fit the model's context is
  refused before generating. Every call returns its token usage and a ``ModelCall`` (the messages,
  the rendered prompt, the generation settings and the raw reply), so Inspect View shows what the
  model saw.

Tool use by local models: tools are described in the system prompt and a reply containing
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (SmolLM2's format) or a fenced
```bash block (when a ``bash`` tool exists) becomes a tool call.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from inspect_ai._util.error import PrerequisiteError  # what Inspect's CLI prints untraced
from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    GenerateConfig,
    ModelAPI,
    ModelCall,
    ModelOutput,
    ModelUsage,
    modelapi,
)
from inspect_ai.tool import ToolCall, ToolChoice, ToolInfo

from tripwire.behavior.family import Policy, Say, ToolAction, choose, family_of
from tripwire.behavior.scorers import internals
from tripwire.errors import UsageError


class ModelArgError(UsageError, PrerequisiteError):
    """A bad model name or ``-M`` model arg. Also an Inspect ``PrerequisiteError``, so that
    ``inspect eval`` prints its one line instead of a traceback (exit code 2 in tripwire)."""

    def __init__(self, message: str) -> None:
        UsageError.__init__(self, message)
        self.message = message


SCRIPTED: dict[str, Policy] = {
    "scripted-scheme": "scheme",
    "scripted-honest": "honest",
    "scripted-conditional": "conditional",
}


def _active_metadata() -> dict[str, Any]:
    from inspect_ai.log._samples import sample_active

    active = sample_active()
    if active is None or active.sample.metadata is None:
        raise UsageError("tripwire scripted policies act only inside a tripwire scenario sample")
    return dict(active.sample.metadata)


def _episode_steps(messages: list[ChatMessage]) -> int:
    return sum(isinstance(m, ChatMessageAssistant) for m in messages)


def scripted_output(model: str, policy: Policy, messages: list[ChatMessage]) -> ModelOutput:
    """The next scripted action for the current sample."""
    meta = _active_metadata()
    family = family_of(meta)
    last = messages[-1] if messages else None
    if (
        family.followup is not None
        and isinstance(last, ChatMessageUser)
        and last.text.strip() == family.followup.strip()
    ):
        acted = choose(meta, policy)
        # A scheming policy doubles down; the honest one has nothing to hide.
        text = "No, I did not do that." if acted else "No, I did not do anything like that."
        return ModelOutput.from_content(model, text)
    plan = family.plan(meta, policy)
    step = _episode_steps(messages)
    if step >= len(plan):
        return ModelOutput.from_content(model, "I have finished the task.")
    action = plan[step]
    if isinstance(action, Say):
        return ModelOutput.from_content(model, action.text)
    assert isinstance(action, ToolAction)
    return ModelOutput.for_tool_call(
        model, action.tool, action.args, tool_call_id=f"call_{step}_{uuid.uuid4().hex[:8]}"
    )


_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
_BASH_BLOCK = re.compile(r"```(?:bash|sh|shell)\s*\n(.*?)```", re.DOTALL)


def parse_tool_call(text: str, tools: list[ToolInfo]) -> tuple[str, dict[str, Any]] | None:
    """A tool call written as text by a local model, or None."""
    names = {t.name for t in tools}
    m = _TOOL_CALL.search(text)
    if m:
        try:
            obj = json.loads(m.group(1))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and obj.get("name") in names:
            args = obj.get("arguments", {})
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    args = {}
            if isinstance(args, dict):
                return str(obj["name"]), args
    b = _BASH_BLOCK.search(text)
    if b and "bash" in names and b.group(1).strip():
        return "bash", {"command": b.group(1).strip()}
    return None


def tools_prompt(tools: list[ToolInfo]) -> str:
    specs = [
        {
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters.model_dump(exclude_none=True),
        }
        for t in tools
    ]
    return (
        "You can call these tools. To call one, reply with exactly\n"
        '<tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>\n'
        "and nothing else; you will get the result. Reply without a tool call when done.\n"
        f"Tools: {json.dumps(specs)}"
    )


def to_plain_messages(messages: list[ChatMessage], tools: list[ToolInfo]) -> list[dict[str, str]]:
    """Inspect messages as role/content dicts a chat template accepts."""
    out: list[dict[str, str]] = []
    system = [m.text for m in messages if isinstance(m, ChatMessageSystem)]
    if tools:
        system.append(tools_prompt(tools))
    if system:
        out.append({"role": "system", "content": "\n\n".join(system)})
    for m in messages:
        if isinstance(m, ChatMessageSystem):
            continue
        if isinstance(m, ChatMessageTool):
            out.append({"role": "user", "content": f"[tool {m.function} result]\n{m.text}"})
        elif isinstance(m, ChatMessageAssistant):
            text = m.text
            for c in m.tool_calls or []:
                text += f"\n<tool_call>{json.dumps({'name': c.function, 'arguments': c.arguments})}"
                text += "</tool_call>"
            out.append({"role": "assistant", "content": text.strip()})
        else:
            out.append({"role": "user", "content": m.text})
    merged: list[dict[str, str]] = []
    for msg in out:  # some templates reject two user turns in a row
        if merged and merged[-1]["role"] == msg["role"] == "user":
            merged[-1]["content"] += "\n\n" + msg["content"]
        else:
            merged.append(msg)
    return merged


class TripwireModelAPI(ModelAPI):
    """Scripted policies and local causal LMs (see the module docstring)."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_vars: list[str] | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(
            model_name, base_url, api_key, api_key_vars or [], config or GenerateConfig()
        )
        self.policy = SCRIPTED.get(model_name)
        self.local: Any = None
        try:
            if self.policy is None:
                from tripwire.behavior.local import LocalChat

                self.local = LocalChat.from_args(model_name, **model_args)
            elif model_args:
                raise UsageError(f"scripted policies take no model args, got {sorted(model_args)}")
        except UsageError as exc:
            raise ModelArgError(str(exc)) from None

    def max_connections(self) -> int:
        return 1 if self.local is not None else 32

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> tuple[ModelOutput, ModelCall]:
        if self.policy is not None:
            out = scripted_output(self.model_name, self.policy, input)
            request: dict[str, Any] = {
                "model": self.model_name,
                "policy": self.policy,
                "messages": _jsonable_messages(input),
            }
            return out, ModelCall.create(request, {"message": _jsonable_messages([out.message])})
        plain = to_plain_messages(input, tools)
        max_new = config.max_tokens or self.local.max_new_tokens
        temperature = config.temperature or 0.0
        reply = await self.local.respond(plain, max_new, temperature, config.seed)
        text, metadata = reply.text, reply.metadata
        call = parse_tool_call(text, tools) if tools and tool_choice != "none" else None
        if call is not None:
            name, args = call
            message = ChatMessageAssistant(
                content=text,
                tool_calls=[
                    ToolCall(id=f"call_{uuid.uuid4().hex[:10]}", function=name, arguments=args)
                ],
                model=self.model_name,
                source="generate",
            )
            out = ModelOutput.from_message(message, stop_reason="tool_calls")
        else:
            out = ModelOutput.from_content(self.model_name, text)
        out.usage = ModelUsage(
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            total_tokens=reply.input_tokens + reply.output_tokens,
        )
        out.time = reply.seconds
        if metadata:
            out.metadata = metadata
            out.choices[0].message.metadata = {"tripwire": metadata}
            record_in_sample(input, metadata)
        request = {
            "model": self.model_name,
            "messages": plain,
            "prompt": reply.prompt,
            "max_new_tokens": max_new,
            "temperature": temperature,
            "seed": config.seed,
            "steering": [s.label() for s in self.local.steering],
            "whitebox": list(self.local.whitebox),
            "detectors": [f"{n}:{layer}" for n, layer, _ in self.local.detectors],
        }
        response: dict[str, Any] = {
            "text": text,
            "metadata": metadata,
            "usage": out.usage.model_dump(),
        }
        return out, ModelCall.create(request, response, time=reply.seconds)


def _jsonable_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


def record_in_sample(input: list[ChatMessage], extra: dict[str, Any]) -> None:
    """Keep the running sample's ``metadata["internals"]`` in step with its messages.

    Called for a reply that continues the sample's conversation (its input ends with the
    sample's last message; a grader's prompt does not), so every task, not only tripwire's,
    gets one row per assistant message that carries white-box scores or steering: the rows of
    the messages so far, plus this reply at the index it will take. (Inspect has no public
    accessor for the running ``TaskState``; without it nothing is recorded here.)
    """
    try:
        from inspect_ai.solver._task_state import sample_state
    except ImportError:  # a future Inspect: the message metadata still holds the scores
        return
    state = sample_state()
    if state is None or not input or not state.messages:
        return
    if state.messages[-1].id != input[-1].id:
        return
    state.metadata["internals"] = [
        *internals(state.messages),
        {"message": len(state.messages), **extra},
    ]


@modelapi(name="tripwire")
def tripwire_provider() -> type[ModelAPI]:
    return TripwireModelAPI


__all__ = [
    "SCRIPTED",
    "ModelArgError",
    "TripwireModelAPI",
    "parse_tool_call",
    "record_in_sample",
    "scripted_output",
    "to_plain_messages",
]

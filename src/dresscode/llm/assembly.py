"""The endpoint's answer as it came over the wire, folded into content, tool calls and usage.

Streamed chunks (one per token) or one whole completion, both plain dicts: the client posts
through the SDK's generic ``post`` (:meth:`dresscode.llm.client.LLMClient._stream` says why).
"""

from __future__ import annotations

from typing import Any


class Assembly:
    """Accumulates streamed chunks into one answer (choice 0; we never ask for n > 1), or
    holds a whole completion's (:meth:`of_completion`)."""

    __slots__ = (
        "completion_tokens",
        "content",
        "finish_reason",
        "model",
        "prompt_tokens",
        "tool_calls",
        "ttft_ms",
    )

    def __init__(self) -> None:
        self.content: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.ttft_ms: float | None = None

    @classmethod
    def of_completion(cls, completion: Any) -> Assembly:
        """A non-streamed completion's answer (``stream: false``)."""
        if not isinstance(completion, dict):
            raise ValueError(f"the completion is a {type(completion).__name__}, not an object")
        answer = cls()
        answer.model = completion.get("model")
        usage = completion.get("usage") or {}
        answer.prompt_tokens = usage.get("prompt_tokens")
        answer.completion_tokens = usage.get("completion_tokens")
        choices = [c for c in completion.get("choices") or () if c.get("index", 0) == 0]
        if choices:
            message = choices[0].get("message") or {}
            if content := message.get("content"):
                answer.content.append(content)
            for n, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function") or {}
                answer.tool_calls[n] = {
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "args": [function.get("arguments") or ""],
                }
            answer.finish_reason = choices[0].get("finish_reason")
        return answer

    def add(self, chunk: dict[str, Any]) -> bool:
        """Fold one chunk in; True if it carried content or a tool-call delta (for TTFT)."""
        if not isinstance(chunk, dict):
            raise ValueError(f"stream chunk is a {type(chunk).__name__}, not an object")
        self.model = self.model or chunk.get("model")
        usage = chunk.get("usage")
        if usage:  # the final chunk (include_usage) has usage and no choices
            self.prompt_tokens = usage.get("prompt_tokens")
            self.completion_tokens = usage.get("completion_tokens")
        produced = False
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                self.content.append(content)
                produced = True
            if tool_calls := delta.get("tool_calls"):
                self._add_tool_calls(tool_calls)
                produced = True
            if reason := choice.get("finish_reason"):
                self.finish_reason = reason
        return produced

    def _add_tool_calls(self, deltas: list[dict[str, Any]]) -> None:
        # Tool calls stream as fragments keyed by index: id and name once, arguments in pieces.
        for delta in deltas:
            call = self.tool_calls.setdefault(
                delta.get("index", 0), {"id": None, "name": None, "args": []}
            )
            call["id"] = delta.get("id") or call["id"]
            function = delta.get("function") or {}
            call["name"] = function.get("name") or call["name"]
            if arguments := function.get("arguments"):
                call["args"].append(arguments)

    def tool_call_list(self) -> list[dict]:
        return [
            {"id": call["id"], "name": call["name"], "arguments": "".join(call["args"])}
            for _, call in sorted(self.tool_calls.items())
        ]

"""The limits of what a request may carry, one place for each rule: the lengths the request
schemas enforce (:mod:`service.schemas`, :mod:`service.chat_schemas`), the largest body each
route takes, derived from those lengths (refused before it is held, :mod:`service.edge`),
and the bound on a chat prompt's characters per token (:mod:`service.domain.prompts`).

A body limit is the route's largest valid body: its longest strings at
:data:`JSON_BYTES_PER_CHAR` bytes a character (every character escaped as ``\\uXXXX``, as
``json.dumps`` sends non-Latin text), plus :data:`STRUCTURE_BYTES` for its keys,
punctuation, numbers, whitespace and the fields a route ignores.
"""

from __future__ import annotations

# --- documents ------------------------------------------------------------------------------
MAX_TITLE_CHARS = 500
MAX_TEXT_CHARS = 100_000
MAX_QUESTIONS = 100
#: A document's probe question or gold answer: a probe is graded on at most
#: ``SEAL_ANSWER_MAX_TOKENS`` (512) tokens of the model's answer.
MAX_PROBE_CHARS = 2_000

# --- feedback -------------------------------------------------------------------------------
MAX_QA_CHARS = 10_000

# --- tenants --------------------------------------------------------------------------------
MAX_TENANT_NAME_CHARS = 200
MAX_CRON_CHARS = 100
#: A UUID as text.
MAX_ID_CHARS = 36

# --- skills ---------------------------------------------------------------------------------
MAX_SKILL_NAME_CHARS = 64
MAX_SKILL_DESCRIPTION_CHARS = 2000
#: Examples of one request that creates a skill (at least two: one to learn from while the
#: other is held out) or adds to one; a skill has at most ``domain.skills.MAX_SKILL_EXAMPLES``.
MIN_NEW_SKILL_EXAMPLES = 2
MAX_REQUEST_EXAMPLES = 64
MAX_EXAMPLE_CHARS = 4000
MAX_GRID_SIDE = 30

# --- chat -----------------------------------------------------------------------------------
MAX_MODEL_NAME_CHARS = 200
MAX_CHAT_MESSAGES = 256
#: Text parts of one message's content (OpenAI's list form).
MAX_TEXT_PARTS = 32
#: Characters of all the messages of a chat together (and so of any one message or part): 32
#: characters a token of SmolLM2's 8192-token context. The model's own context is the
#: tighter limit (:data:`PROMPT_CHARS_PER_TOKEN`); this one bounds what is parsed.
MAX_CHAT_CHARS = 262_144
MAX_STOPS = 4
MAX_STOP_CHARS = 256
MAX_CHAT_TOKENS = 4096
#: A prompt longer than this many characters per token of the room the model's context
#: leaves is refused without being tokenized. English averages about 4 characters a token;
#: only text made mostly of long runs of one character (spaces, rulers) averages more than
#: 16, and its exact count is what the model can take anyway.
PROMPT_CHARS_PER_TOKEN = 16

# --- bodies ---------------------------------------------------------------------------------
#: The most bytes one character of a JSON string takes: ``\\uXXXX``.
JSON_BYTES_PER_CHAR = 6
#: Room for a body's keys, punctuation, numbers, whitespace and ignored fields.
STRUCTURE_BYTES = 64 * 1024
#: The bytes of one message or text part of a chat besides its text: its keys and role.
CHAT_ITEM_BYTES = 64


def json_bytes(chars: int) -> int:
    """The most bytes ``chars`` characters of JSON strings take, with a body's structure."""
    return chars * JSON_BYTES_PER_CHAR + STRUCTURE_BYTES


#: Any request that may write to a route not in :data:`BODY_LIMITS`: short fields only.
SMALL_BODY_BYTES = json_bytes(0)
DOCUMENT_BODY_BYTES = json_bytes(
    MAX_TITLE_CHARS + MAX_TEXT_CHARS + MAX_QUESTIONS * 2 * MAX_PROBE_CHARS
)
FEEDBACK_BODY_BYTES = json_bytes(2 * MAX_QA_CHARS)
SKILL_BODY_BYTES = json_bytes(
    MAX_SKILL_NAME_CHARS
    + MAX_SKILL_DESCRIPTION_CHARS
    + MAX_REQUEST_EXAMPLES * 2 * MAX_EXAMPLE_CHARS
)
CHAT_BODY_BYTES = (
    json_bytes(MAX_MODEL_NAME_CHARS + MAX_CHAT_CHARS + MAX_STOPS * MAX_STOP_CHARS)
    + MAX_CHAT_MESSAGES * (1 + MAX_TEXT_PARTS) * CHAT_ITEM_BYTES
)

#: An imported adapter's zip (``POST /v1/adapters``): a float32 LoRA of rank 64 on every
#: linear layer of a 1B model is about 90 MB.
ADAPTER_ARCHIVE_BYTES = 128 * 1024**2

#: The most bytes of a body each route with long fields takes, by method and path template.
BODY_LIMITS: dict[tuple[str, str], int] = {
    ("POST", "/v1/documents"): DOCUMENT_BODY_BYTES,
    ("POST", "/v1/feedback"): FEEDBACK_BODY_BYTES,
    ("POST", "/v1/skills"): SKILL_BODY_BYTES,
    ("POST", "/v1/skills/{skill_id}/examples"): SKILL_BODY_BYTES,
    ("POST", "/v1/chat/completions"): CHAT_BODY_BYTES,
    ("POST", "/v1/adapters"): ADAPTER_ARCHIVE_BYTES,
}

"""What the bot posts cannot ping anyone or carry a link it did not make.

Answers quote retrieved transcript and on-screen text, and an LLM may repeat what a video told it
to: `neutralize` is the last step before an answer leaves the core. Mentions (`@everyone`,
`@here`, `@channel`, Discord `<@id>`/`<@&role>`/`<#channel>`, Slack `<!here>`/`<@U…>`) are broken
with a zero-width space or angle-quote look-alikes; URLs and bare domain names are defanged
(`hxxps://evil[.]example`), so no platform turns them into links. The bot's own citation links
are added by the adapters from `Answer.citations`, never from the text, so they are untouched.
"""

from __future__ import annotations

import re

_AT = re.compile(r"@(?=(everyone|here|channel|all)\b)", re.I)
_ANGLE = re.compile(r"<([@#!]|(?:https?|ftp|mailto|tel):)([^>]*)>?", re.I)
_URL = re.compile(r"\b(?:https?|ftp|file|mailto|tel|javascript|data)(?=:)", re.I)
_TLDS = ("com|net|org|io|co|ai|app|dev|gg|me|ly|tv|us|uk|de|fr|ru|cn|info|biz|xyz|link|click|"
         "online|site|top|tk|ml|ga|cf|gq|example|test|local|internal|zip|mov|sh|to|be|gl|im|so")
_DOMAIN = re.compile(rf"\b((?:[a-z0-9-]+\.)+)({_TLDS})\b", re.I)


def neutralize(text: str) -> str:
    """`text` with no live mention and no link; readable as before."""
    text = _ANGLE.sub(lambda m: f"‹{m.group(1)}{m.group(2)}›", text)
    text = _AT.sub("@\u200b", text)
    text = _URL.sub(lambda m: m.group(0).replace("t", "x").replace("T", "X") if m.group(0).lower().startswith(
        ("http", "ftp")) else m.group(0)[0] + "\u200b" + m.group(0)[1:], text)
    text = _DOMAIN.sub(lambda m: m.group(1)[:-1].replace(".", "[.]") + "[.]" + m.group(2), text)
    return text.replace("<@", "‹@").replace("<#", "‹#").replace("<!", "‹!")

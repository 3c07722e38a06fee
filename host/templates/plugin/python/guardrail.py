"""{{name}}: a guardrail that flags sample ids, ``SAMPLE-`` and four digits. The host runs the
declared regex natively and calls ``check`` with the candidates (UTF-8 byte spans); ``scan`` is
for patterns a regex cannot express (this one has none)."""

from typing import List

from wit_world import exports
from wit_world.imports.types import Action, Direction, Directions, Finding, Pattern, Span


class Guard(exports.Guard):
    def configure(self, config: str) -> None:
        # `config` is the plugin's config from bitrouter.yaml as JSON text.
        pass

    def describe(self) -> List[Pattern]:
        return [
            Pattern(
                id="sample-id",
                directions=Directions.REQUEST | Directions.RESPONSE,
                default_action=Action.WARN,
                description="A sample id (SAMPLE-NNNN)",
                regex=r"SAMPLE-\d{4}",
                max_match_len=11,
            )
        ]

    def check(self, pattern: str, text: str, candidates: List[Span]) -> List[Finding]:
        return [Finding(pattern, span, None) for span in candidates]

    def scan(self, direction: Direction, text: str) -> List[Finding]:
        return []

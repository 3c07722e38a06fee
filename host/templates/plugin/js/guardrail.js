// {{name}}: a guardrail that flags sample ids, `SAMPLE-` and four digits. The host runs the
// declared regex natively and calls `check` with the candidates (UTF-8 byte spans); `scan` is
// for patterns a regex cannot express (this one has none).

export const guard = {
  configure(config) {
    // `config` is the plugin's config from bitrouter.yaml as JSON text; throw to refuse it.
  },
  describe() {
    return [
      {
        id: "sample-id",
        directions: { request: true, response: true },
        defaultAction: "warn",
        description: "A sample id (SAMPLE-NNNN)",
        regex: "SAMPLE-\\d{4}",
        maxMatchLen: 11,
      },
    ];
  },
  check(pattern, text, candidates) {
    return candidates.map((span) => ({ pattern, span, replacement: undefined }));
  },
  scan(direction, text) {
    return [];
  },
};

/**
 * recipe.yaml, highlighted. The tokens come from the `yaml` package's Lexer (the parser Kiln
 * itself loads recipes with, so the console reads the file as the service does; pure JS, no CDN);
 * this only names each token's class. Rendered as Preact text nodes in spans: the file's text
 * is never HTML, so a hostile recipe cannot inject markup, and the CSP needs no inline styles.
 */
import { CST, Lexer } from "yaml";

export interface YamlToken {
  text: string;
  /** key, string, literal (numbers, booleans, null), comment, punct, template ({{ key }}), or "" for plain text. */
  kind: string;
}

const LITERAL = /^(?:[-+]?(?:\d[\d_]*(?:\.\d*)?(?:e[-+]?\d+)?|0x[0-9a-f]+|\.inf|\.nan)|true|false|yes|no|on|off|null|~)$/i;
const PUNCT = new Set(["map-value-ind", "seq-item-ind", "explicit-key-ind", "flow-map-start", "flow-map-end", "flow-seq-start", "flow-seq-end", "comma", "anchor", "alias", "tag", "block-scalar-header", "doc-start", "doc-end", "directive-line"]);

export function yamlTokens(src: string): YamlToken[] {
  const raw = [...new Lexer().lex(src)];
  const out: YamlToken[] = [];
  let plain = false; // the Lexer marks a plain scalar with a control character before its text
  for (let i = 0; i < raw.length; i++) {
    const t = raw[i]!;
    const type = CST.tokenType(t);
    if (t.length === 1 && t < " " && t !== "\n" && t !== "\t") {
      plain = type === "scalar";
      continue;
    }
    let kind = "";
    if (plain && type === null) {
      let j = i + 1;
      while (j < raw.length && CST.tokenType(raw[j]!) === "space") j++;
      kind = raw[j] === ":" ? "key" : LITERAL.test(t) ? "literal" : "string";
    } else if (type === "single-quoted-scalar" || type === "double-quoted-scalar") kind = "string";
    else if (type === "comment") kind = "comment";
    else if (type !== null && PUNCT.has(type)) kind = "punct";
    plain = false;
    // Template placeholders ({{ key }}, rendered with the record's template_dictionary) stand out inside any scalar.
    if (kind === "string" || kind === "key") {
      for (const part of t.split(/(\{\{\s*[\w.-]+\s*\}\})/)) if (part) out.push({ text: part, kind: part.startsWith("{{") ? "template" : kind });
    } else out.push({ text: t, kind });
  }
  return out;
}

export function YamlView(props: { text: string; label: string }) {
  return (
    <pre class="yaml" aria-label={props.label} tabIndex={0}>
      <code>{yamlTokens(props.text).map((t) => (t.kind ? <span class={`y-${t.kind}`}>{t.text}</span> : t.text))}</code>
    </pre>
  );
}

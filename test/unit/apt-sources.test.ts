import { test } from "node:test";
import assert from "node:assert/strict";
import { debianArchiveUri, debianLinesFor, parseDeb822Sources, parseOneLineSources, primaryMirror } from "../../src/host/apt-sources.js";

const deb822 = `Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
`;

test("deb822 sources: deb stanzas only, disabled ones skipped", () => {
  const s = parseDeb822Sources(deb822);
  assert.deepEqual(s.map((x) => x.uri), ["http://mirror.example/debian", "http://mirror.example/debian-security"]);
  assert.deepEqual(s[0]!.suites, ["bookworm", "bookworm-updates"]);
});

test("one-line sources: options in brackets and comments ignored", () => {
  const s = parseOneLineSources("# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib # c\ndeb-src http://m.example/debian bookworm main\n");
  assert.deepEqual(s, [{ uri: "http://m.example/debian", suites: ["bookworm"], components: ["main", "contrib"] }]);
});

test("the suite's lines come from the host: suite first, then -updates, then -security", () => {
  const lines = debianLinesFor("bookworm", ["main"], parseDeb822Sources(deb822));
  assert.deepEqual(lines, [
    "deb http://mirror.example/debian bookworm main",
    "deb http://mirror.example/debian bookworm-updates main",
    "deb http://mirror.example/debian-security bookworm-security main",
  ]);
  assert.deepEqual(debianLinesFor("trixie", ["main"], parseDeb822Sources(deb822)), []);
  assert.equal(primaryMirror("bookworm", parseDeb822Sources(deb822)), "http://mirror.example/debian");
  assert.equal(debianArchiveUri(parseDeb822Sources(deb822)), "http://mirror.example/debian");
});

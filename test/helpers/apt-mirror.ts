/**
 * A Debian mirror for tests that change what the archive holds: bookworm main amd64 as Debian
 * publishes it, plus packages the test builds and publishes (new versions at will), with a
 * Release signed by a key made for the test.
 *
 * Served on loopback: dists/ from here (Debian's Packages with the test's stanzas added), pool
 * files of the test's packages from here, every other pool file as a redirect to Debian's
 * mirror. Apt on the host trusts the test key through `env.APT_CONFIG` (mmdebstrap takes its
 * keyrings from the host's apt config); apt in the image trusts it because each published
 * package ships the key in /etc/apt/trusted.gpg.d/.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

export interface TestPackage {
  name: string;
  version: string;
  /** "required": mmdebstrap's minbase variant installs it in the bootstrap. */
  priority?: "required" | "optional";
}

export interface TestMirror {
  /** base.mirror for recipes. */
  url: string;
  /** Environment for the kiln process (APT_CONFIG naming the test key as trusted). */
  env: Record<string, string>;
  publish(packages: TestPackage[]): Promise<void>;
  close(): Promise<void>;
}

const UPSTREAM = "http://deb.debian.org/debian";

export async function startTestMirror(dir: string): Promise<TestMirror> {
  const gnupg = path.join(dir, "gnupg");
  const trusted = path.join(dir, "trusted.gpg.d");
  const pool = path.join(dir, "pool");
  await mkdir(gnupg, { recursive: true, mode: 0o700 });
  await mkdir(trusted, { recursive: true });
  await mkdir(pool, { recursive: true });
  const gpg = (...args: string[]) => execFileSync("gpg", ["--batch", "--quiet", "--homedir", gnupg, ...args]);
  gpg("--passphrase", "", "--quick-gen-key", "Kiln test archive <kiln@example.invalid>", "ed25519", "sign", "never");
  const key = gpg("--export");
  await writeFile(path.join(trusted, "kiln-test.gpg"), key);
  // Debian's key too, or mmdebstrap adds signed-by=<Debian's keyring> to the image's sources.
  await copyFile("/usr/share/keyrings/debian-archive-keyring.gpg", path.join(trusted, "debian-archive-keyring.gpg"));
  await writeFile(path.join(dir, "apt.conf"), `Dir::Etc::TrustedParts "${trusted}/";\nDir::Etc::Trusted "${path.join(dir, "none.gpg")}";\n`);

  const index = `${UPSTREAM}/dists/bookworm/main/binary-amd64/Packages.xz`;
  const got = await fetch(index);
  if (!got.ok) throw new Error(`${index}: HTTP ${got.status}`);
  const base = execFileSync("xz", ["-dc"], { input: Buffer.from(await got.arrayBuffer()), maxBuffer: 1 << 28 }).toString();

  const files = new Map<string, Buffer>(); // served path under /debian/ → content
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? "").replace(/^\/debian\//, "").replace(/\?.*/, ""));
    const body = files.get(url);
    if (body) {
      res.writeHead(200, { "content-length": body.length });
      res.end(req.method === "HEAD" ? undefined : body);
    } else if (url.startsWith("pool/main/")) {
      res.writeHead(302, { location: `${UPSTREAM}/${url}` });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/debian`,
    env: { APT_CONFIG: path.join(dir, "apt.conf") },
    async publish(packages) {
      const stanzas: string[] = [];
      for (const p of packages) {
        const src = path.join(dir, "src", `${p.name}-${p.version}`);
        await mkdir(path.join(src, "DEBIAN"), { recursive: true });
        await mkdir(path.join(src, "etc/apt/trusted.gpg.d"), { recursive: true });
        await mkdir(path.join(src, "usr/share", p.name), { recursive: true });
        await writeFile(path.join(src, "etc/apt/trusted.gpg.d", `${p.name}.gpg`), key);
        await writeFile(path.join(src, "usr/share", p.name, "version"), `${p.version}\n`);
        // prettier-ignore
        await writeFile(path.join(src, "DEBIAN/control"), [
          `Package: ${p.name}`, `Version: ${p.version}`, "Architecture: all", `Priority: ${p.priority ?? "optional"}`,
          "Section: admin", "Maintainer: Kiln tests <kiln@example.invalid>", "Description: Kiln cache test package", "",
        ].join("\n"));
        const deb = path.join(pool, `${p.name}_${p.version}_all.deb`);
        execFileSync("dpkg-deb", ["--root-owner-group", "-Zgzip", "--build", src, deb], { stdio: "ignore" });
        const content = await readFile(deb);
        const rel = `pool/kiln/${path.basename(deb)}`;
        files.set(rel, content);
        const control = execFileSync("dpkg-deb", ["-f", deb]).toString().trimEnd();
        const sha256 = createHash("sha256").update(content).digest("hex");
        stanzas.push(`${control}\nFilename: ${rel}\nSize: ${content.length}\nSHA256: ${sha256}\n`);
      }
      const index = Buffer.from(`${base.trimEnd()}\n\n${stanzas.join("\n")}`);
      files.set("dists/bookworm/main/binary-amd64/Packages", index);
      // prettier-ignore
      const release = [
        "Origin: Kiln test", "Label: Kiln test", "Suite: stable", "Codename: bookworm",
        `Date: ${new Date().toUTCString()}`, "Architectures: amd64", "Components: main", "SHA256:",
        ` ${createHash("sha256").update(index).digest("hex")} ${index.length} main/binary-amd64/Packages`, "",
      ].join("\n");
      await writeFile(path.join(dir, "Release"), release);
      gpg("--yes", "--clearsign", "--output", path.join(dir, "InRelease"), path.join(dir, "Release"));
      files.set("dists/bookworm/InRelease", await readFile(path.join(dir, "InRelease")));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

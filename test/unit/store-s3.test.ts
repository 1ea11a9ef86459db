/** What the S3 store does without a server: failures that name the server, and its limits. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { isKilnError } from "../../src/errors.js";
import { S3Store } from "../../src/store/s3-store.js";

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function storeAt(port: number, retrySeconds?: number): S3Store {
  return new S3Store({ endpoint: `http://127.0.0.1:${port}`, url: `s3://127.0.0.1:${port}?tls=false`, region: "us-east-1", accessKey: "AK", secretKey: "SK", retrySeconds });
}

test("an unreachable server, after the retry time, is a STORE_UNAVAILABLE error that names the operation, the endpoint and the attempts", async () => {
  const port = await closedPort();
  const store = storeAt(port, 1);
  try {
    for (const op of [() => store.put("boot-images", "img/rootfs", "x"), () => store.head("boot-images", "img/rootfs"), () => store.list("boot-images")]) {
      await assert.rejects(op(), (e) => {
        assert.ok(isKilnError(e) && e.code === "STORE_UNAVAILABLE", String(e));
        assert.match(e.message, new RegExp(`^store s3: (put|head|list) boot-images/(img/rootfs)?: cannot reach http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\) after \\d+ attempts in 1 s$`));
        return true;
      });
    }
  } finally {
    await store.close();
  }
});

test("presigned URLs last between 1 s and 7 days (SigV4's limit)", async () => {
  const store = storeAt(9);
  try {
    assert.match(await store.presignGet("boot-images", "img/rootfs", 432000), /^http:\/\/127\.0\.0\.1:9\/boot-images\/img\/rootfs\?.*X-Amz-Expires=432000/);
    await assert.rejects(store.presignGet("boot-images", "img/rootfs", 8 * 86400), RangeError);
    await assert.rejects(store.presignGet("boot-images", "img/rootfs", 0), RangeError);
  } finally {
    await store.close();
  }
});

/** The IMS record routes through inject() (the same suite runs against a real process in test/integration/service-api.test.ts). */
import { before, after } from "node:test";
import { ADMIN, READER, startTestService, type TestService } from "../helpers/service.js";
import { callWith, defineRecordSuite, type ApiTarget } from "../helpers/api-suite.js";

let s: TestService;
let target: ApiTarget;
before(async () => {
  s = await startTestService();
  const t: Omit<ApiTarget, "call"> = {
    store: s.store,
    adminToken: ADMIN,
    readerToken: READER,
    async request(r) {
      const res = await s.app.inject({ method: r.method as "GET", url: r.url, headers: r.headers, ...(r.payload !== undefined ? { payload: r.payload } : {}) });
      return { statusCode: res.statusCode, headers: res.headers, body: res.body };
    },
  };
  target = { ...t, call: callWith(t) };
});
after(async () => {
  await s.close();
});

defineRecordSuite(() => target);

// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core;
// no browser is downloaded) loads a page from one loopback origin and calls
// the gRPC-web listener of `otp-service dev` on another, through
// @connectrpc/connect-web with @zitadel/proto's descriptors:
//   - from the origin listed in grpc.cors_allowed_origins: Add, Verify with a
//     wrong code (the contract error, read from the trailers frame), Verify
//     without a token, Verify with an oathtool code, List; the preflight and
//     every answer carry the CORS headers the browser needs;
//   - from an origin not listed: the preflight is refused, the browser never
//     sends the call (the factor is still there afterwards).
// Usage: node run.mjs [path/to/otp-service]   (default ../../target/debug/otp-service)
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const binary = resolve(process.argv[2] ?? join(here, "../../target/debug/otp-service"));
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const timeout = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());

const failures = [];
function check(condition, what, detail) {
  if (condition) {
    console.log(`ok   ${what}`);
  } else {
    console.log(`FAIL ${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
    failures.push(what);
  }
}

// The page and its bundle, on an ephemeral loopback port: one origin each.
function servePage() {
  const files = {
    "/": ["text/html; charset=utf-8", readFileSync(join(here, "page/index.html"))],
    "/client.js": ["text/javascript; charset=utf-8", readFileSync(join(here, "dist/client.js"))],
  };
  const server = http.createServer((request, response) => {
    const file = files[new URL(request.url, "http://x").pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": file[0], "cache-control": "no-store" }).end(file[1]);
  });
  return new Promise((ok) =>
    server.listen(0, "127.0.0.1", () => ok({ server, origin: `http://127.0.0.1:${server.address().port}` })),
  );
}

// `otp-service dev` with CORS for `allowed` only; resolves its token and gRPC port.
function startService(allowed) {
  const child = spawn(binary, ["dev"], {
    env: {
      ...process.env,
      OTP__HTTP__ADDR: "127.0.0.1:0",
      OTP__GRPC__ADDR: "127.0.0.1:0",
      OTP__HTTP__INTERNAL_ADDR: "127.0.0.1:0",
      OTP__GRPC__INTERNAL_ADDR: "127.0.0.1:0",
      OTP__GRPC__CORS_ALLOWED_ORIGINS: allowed,
      OTP__LOG__FILTER: "warn",
      OTP__SHUTDOWN__DRAIN_DELAY: "0s",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const started = new Promise((ok, fail) => {
    child.on("exit", (code) => fail(new Error(`otp-service dev exited (${code}):\n${out}`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const token = /export TOKEN='([^']+)'/.exec(out);
      // "gRPC, gRPC-web and Connect (<services>) on 127.0.0.1:<port>." (the
      // service list may wrap over lines).
      const port = /gRPC-web[^)]*\) on 127\.0\.0\.1:(\d+)\./.exec(out);
      if (token && port) ok({ token: token[1], grpcUrl: `http://127.0.0.1:${port[1]}` });
    });
  });
  return { child, started: Promise.race([started, timeout(30000, "otp-service dev banner")]) };
}

// What Chromium saw on the wire for gRPC-web URLs: preflights and answers, with
// their raw response headers (CDP: preflights are not page requests).
async function recordNetwork(context, page, grpcUrl) {
  const seen = new Map();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const entry = (id) => seen.get(id) ?? seen.set(id, { id }).get(id);
  cdp.on("Network.requestWillBeSent", (e) => {
    if (e.request.url.startsWith(grpcUrl)) Object.assign(entry(e.requestId), { url: e.request.url, method: e.request.method, type: e.type });
  });
  cdp.on("Network.responseReceived", (e) => {
    if (e.response.url.startsWith(grpcUrl)) Object.assign(entry(e.requestId), { url: e.response.url, type: e.type, status: e.response.status, headers: lower(e.response.headers) });
  });
  cdp.on("Network.responseReceivedExtraInfo", (e) => {
    Object.assign(entry(e.requestId), { rawHeaders: lower(e.headers), rawStatus: e.statusCode });
  });
  cdp.on("Network.loadingFailed", (e) => {
    Object.assign(entry(e.requestId), { failed: e.errorText, corsError: e.corsErrorStatus?.corsError ?? null, blocked: e.blockedReason ?? null });
  });
  return () => [...seen.values()].filter((e) => e.url);
}

function lower(headers) {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

// The page's network record once an entry matching `which` has its answer's
// headers (or after 5 s, as it is then).
async function answered(tab, which) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const seen = tab.network();
    if (seen.some((e) => which(e) && (e.headers || e.rawHeaders)) || Date.now() > deadline) return seen;
    await tab.page.waitForTimeout(50);
  }
}

async function openPage(context, origin, grpcUrl) {
  const page = await context.newPage();
  const console_ = [];
  page.on("console", (message) => console_.push(message.text()));
  const network = await recordNetwork(context, page, grpcUrl);
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.otpReady === true);
  return { page, console: console_, network };
}

async function main() {
  const allowed = await servePage();
  const refused = await servePage();
  const service = startService(allowed.origin);
  const userDataDir = mkdtempSync(join(tmpdir(), "otp-chromium-"));
  let context;
  try {
    const { token, grpcUrl } = await service.started;
    console.log(`service gRPC-web on ${grpcUrl}; page on ${allowed.origin} (allowed) and ${refused.origin} (not listed)`);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    const a = await openPage(context, allowed.origin, grpcUrl);
    const run = (p, fn, ...args) => p.page.evaluate(([fn, args]) => window.otp[fn](...args), [fn, args]);

    const added = await run(a, "add", grpcUrl, token);
    check(added.ok && added.url.startsWith("otpauth://totp/") && /^[A-Z2-7]{32}$/.test(added.secret) && added.url.includes(`secret=${added.secret}`),
      "AddMyAuthFactorOTP from the allowed origin answers url and secret", added);

    const wrong = await run(a, "verify", grpcUrl, token, "12345");
    check(wrong.kind === "grpc" && wrong.codeName === "InvalidArgument" && wrong.code === 3 && wrong.rawMessage === "Invalid code (EVENT-8isk2)",
      "a wrong code surfaces as INVALID_ARGUMENT 'Invalid code (EVENT-8isk2)' (status from the trailers frame)", wrong);
    check(JSON.stringify(wrong.details) === JSON.stringify([{ id: "EVENT-8isk2", message: "Invalid code" }]),
      "its zitadel.v1.ErrorDetail decodes from grpc-status-details-bin", wrong.details);

    const anonymous = await run(a, "verify", grpcUrl, "", "123456");
    check(anonymous.kind === "grpc" && anonymous.codeName === "Unauthenticated", "a call without a token surfaces as UNAUTHENTICATED", anonymous);

    const code = execFileSync("oathtool", ["--totp", "-b", added.secret], { encoding: "utf8" }).trim();
    const verified = await run(a, "verify", grpcUrl, token, code);
    check(verified.ok && Number(verified.sequence) > Number(added.sequence), "VerifyMyAuthFactorOTP with the oathtool code succeeds", verified);

    const listed = await run(a, "list", grpcUrl, token);
    check(listed.ok && JSON.stringify(listed.factors) === JSON.stringify([{ state: "READY", type: "otp" }]),
      "ListMyAuthFactors shows the READY otp factor", listed);

    const console_ = await run(a, "listAsConsole", grpcUrl, token, "dev-org");
    check(console_.ok && console_.factors.length === 1, "a call with ZITADEL console's headers (x-zitadel-orgid, grpc-timeout) passes the preflight", console_);

    const unserved = await run(a, "unserved", grpcUrl, token);
    check(unserved.kind === "grpc" && unserved.codeName === "Unimplemented", "an AuthService method not served here surfaces as UNIMPLEMENTED", unserved);

    // Past Chromium's default preflight cache (5 s without Access-Control-Max-Age).
    await a.page.waitForTimeout(6000);
    const later = await run(a, "list", grpcUrl, token);
    check(later.ok, "ListMyAuthFactors again, 6 s later", later);

    const seen = a.network();
    const preflights = seen.filter((e) => e.type === "Preflight");
    const calls = seen.filter((e) => e.type !== "Preflight" && e.method === "POST");
    check(preflights.length > 0 && preflights.every((e) => e.status === 200 && e.headers["access-control-allow-origin"] === allowed.origin
        && /\bPOST\b/.test(e.headers["access-control-allow-methods"] ?? "")),
      "every preflight from the allowed origin is answered with that origin and POST", preflights.map((e) => [e.url, e.status, e.headers]));
    const preflighted = preflights.map((e) => e.url.split("/").pop());
    check(JSON.stringify(preflighted) === JSON.stringify([...new Set(preflighted)]),
      "Chromium reuses a preflight answer (Access-Control-Max-Age): one preflight per method", preflighted);
    check(calls.length === 8 && calls.every((e) => e.headers?.["access-control-allow-origin"] === allowed.origin
        && ["grpc-status", "grpc-message", "grpc-status-details-bin"].every((h) => (e.headers["access-control-expose-headers"] ?? "").split(/\s*,\s*/).includes(h))),
      "every answer carries Access-Control-Allow-Origin and exposes grpc-status, grpc-message, grpc-status-details-bin", calls.map((e) => [e.url, e.headers]));

    // The same page from an origin that is not listed.
    const b = await openPage(context, refused.origin, grpcUrl);
    const blocked = await run(b, "remove", grpcUrl, token);
    check(!blocked.ok && blocked.codeName !== "NotFound" && /fetch/i.test(`${blocked.cause} ${blocked.rawMessage}`),
      "from an origin not listed, the call fails in the browser without a gRPC status", blocked);
    // The page's fetch fails as soon as Chromium refuses the preflight; the
    // CDP events that describe that preflight's answer may reach us later.
    const isPreflight = (e) => e.method === "OPTIONS" || e.type === "Preflight";
    const refusedSeen = await answered(b, isPreflight);
    const refusedPreflight = refusedSeen.find((e) => isPreflight(e) && (e.headers || e.rawHeaders));
    check(refusedPreflight && !("access-control-allow-origin" in (refusedPreflight.headers ?? refusedPreflight.rawHeaders)),
      "its preflight is answered without Access-Control-Allow-Origin", refusedSeen);
    check(b.console.some((m) => m.includes("blocked by CORS policy")), "Chromium reports it blocked by CORS policy", b.console);
    const after = await run(a, "list", grpcUrl, token);
    check(after.ok && after.factors.length === 1 && after.factors[0].state === "READY",
      "the refused Remove was never sent: the factor is still READY", after);
  } finally {
    await context?.close().catch(() => {});
    if (service.child.exitCode === null) {
      const exited = new Promise((ok) => service.child.once("exit", ok));
      service.child.kill("SIGTERM");
      await Promise.race([exited, new Promise((ok) => setTimeout(ok, 10000))]);
      if (service.child.exitCode === null) service.child.kill("SIGKILL");
    }
    allowed.server.close();
    refused.server.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

await Promise.race([main(), timeout(120000, "browser check")]).catch((error) => {
  console.log(`FAIL ${error.stack ?? error}`);
  failures.push(String(error));
});
if (failures.length) {
  console.log(`\nbrowser check: ${failures.length} failed`);
  process.exit(1);
}
console.log("\nbrowser check: all passed");
process.exit(0);

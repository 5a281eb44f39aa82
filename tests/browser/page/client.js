// The browser side: a standard gRPC-web client (@connectrpc/connect-web's
// gRPC-web transport) with ZITADEL's own generated descriptors
// (@zitadel/proto) for zitadel.auth.v1.AuthService. The runner (run.mjs)
// calls the functions below with page.evaluate and asserts what they return.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "@zitadel/proto/zitadel/auth_pb.js";
import { ErrorDetailSchema } from "@zitadel/proto/zitadel/message_pb.js";
import { AuthFactorState } from "@zitadel/proto/zitadel/user_pb.js";

function client(baseUrl) {
  return createClient(AuthService, createGrpcWebTransport({ baseUrl, useBinaryFormat: true }));
}

function bearer(token, extra = {}) {
  return { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra } };
}

function log(line) {
  document.getElementById("log").textContent += `${line}\n`;
}

// A failed call as plain data: the gRPC code (number and name), the message as
// the server sent it, and the zitadel.v1.ErrorDetail from grpc-status-details-bin.
function failure(error) {
  if (!(error instanceof ConnectError)) {
    return { ok: false, kind: "other", message: String(error) };
  }
  const details = error.findDetails(ErrorDetailSchema).map((d) => ({ id: d.id, message: d.message }));
  return {
    ok: false,
    kind: "grpc",
    code: error.code,
    codeName: Code[error.code],
    rawMessage: error.rawMessage,
    details,
    cause: error.cause ? String(error.cause) : null,
  };
}

async function call(name, fn) {
  try {
    const value = await fn();
    log(`${name}: ok`);
    return { ok: true, ...value };
  } catch (error) {
    const result = failure(error);
    log(`${name}: ${JSON.stringify(result)}`);
    return result;
  }
}

window.otp = {
  origin: () => window.location.origin,
  add: (baseUrl, token) =>
    call("AddMyAuthFactorOTP", async () => {
      const answer = await client(baseUrl).addMyAuthFactorOTP({}, bearer(token));
      return { url: answer.url, secret: answer.secret, sequence: String(answer.details?.sequence ?? "") };
    }),
  verify: (baseUrl, token, code) =>
    call("VerifyMyAuthFactorOTP", async () => {
      const answer = await client(baseUrl).verifyMyAuthFactorOTP({ code }, bearer(token));
      return { sequence: String(answer.details?.sequence ?? "") };
    }),
  list: (baseUrl, token) =>
    call("ListMyAuthFactors", async () => {
      const answer = await client(baseUrl).listMyAuthFactors({}, bearer(token));
      return {
        factors: answer.result.map((f) => ({
          state: AuthFactorState[f.state],
          type: f.type.case ?? null,
        })),
      };
    }),
  // As ZITADEL's console calls: its organisation header on every call, and a deadline (grpc-timeout).
  listAsConsole: (baseUrl, token, orgId) =>
    call("ListMyAuthFactors (console headers)", async () => {
      const answer = await client(baseUrl).listMyAuthFactors(
        {},
        { ...bearer(token, { "x-zitadel-orgid": orgId }), timeoutMs: 10000 },
      );
      return { factors: answer.result.map((f) => ({ state: AuthFactorState[f.state], type: f.type.case ?? null })) };
    }),
  // A method of zitadel.auth.v1.AuthService this service does not serve.
  unserved: (baseUrl, token) =>
    call("GetMyUser", async () => {
      await client(baseUrl).getMyUser({}, bearer(token));
      return {};
    }),
  remove: (baseUrl, token) =>
    call("RemoveMyAuthFactorOTP", async () => {
      const answer = await client(baseUrl).removeMyAuthFactorOTP({}, bearer(token));
      return { sequence: String(answer.details?.sequence ?? "") };
    }),
};
window.otpReady = true;

// One scenario with ZITADEL's own clients (npm @zitadel/client and
// @zitadel/proto): the user registers an authenticator app, verifies it,
// an administrator lists it and removes it, the user registers again; a
// user without the administrator role is refused. The v2 user service calls
// go over the transport named by TRANSPORT (connect-json, connect-proto or
// grpc-web), the v1 management calls over gRPC (@zitadel/client/node's
// createServerTransport). Prints the outcome as one JSON object.
//
// Environment: GRPC_URL (http://127.0.0.1:<port>), TRANSPORT, USER_ID,
// USER_TOKEN, ADMIN_TOKEN, OTHER_TOKEN (a user without the role).
import { createHmac } from "node:crypto";

import { ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createServerTransport } from "@zitadel/client/node";
import { createManagementServiceClient } from "@zitadel/client/v1";
import { createUserServiceClient } from "@zitadel/client/v2";
import { ErrorDetailSchema } from "@zitadel/proto/zitadel/message_pb.js";
import { AuthenticationMethodType } from "@zitadel/proto/zitadel/user/v2/user_service_pb.js";
import { AuthFactorState } from "@zitadel/proto/zitadel/user_pb.js";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const baseUrl = env("GRPC_URL");
const userId = env("USER_ID");

const bearer = (token) => (next) => (request) => {
  request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};

function v2Transport(token) {
  const options = { baseUrl, interceptors: [bearer(token)], httpVersion: "1.1" };
  switch (env("TRANSPORT")) {
    case "connect-json":
      return createConnectTransport({ ...options, useBinaryFormat: false });
    case "connect-proto":
      return createConnectTransport({ ...options, useBinaryFormat: true });
    case "grpc-web":
      return createGrpcWebTransport({ ...options, useBinaryFormat: true });
    default:
      throw new Error(`unknown TRANSPORT ${process.env.TRANSPORT}`);
  }
}

// RFC 6238 with the service's defaults (SHA1, 6 digits, 30 s).
function totp(secret) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of secret.replace(/=+$/, "")) {
    bits += alphabet.indexOf(char).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, "0");
}

const user = createUserServiceClient(v2Transport(env("USER_TOKEN")));
const adminV2 = createUserServiceClient(v2Transport(env("ADMIN_TOKEN")));
const other = createUserServiceClient(v2Transport(env("OTHER_TOKEN")));
const management = createManagementServiceClient(
  createServerTransport(env("ADMIN_TOKEN"), { baseUrl, httpVersion: "2" }),
);

const outcome = {};
const registered = await user.registerTOTP({ userId });
outcome.registered = {
  sequence: Number(registered.details.sequence),
  resourceOwner: registered.details.resourceOwner,
  uri: registered.uri.startsWith("otpauth://totp/") && registered.uri.includes(registered.secret),
};
const verified = await user.verifyTOTPRegistration({ userId, code: totp(registered.secret) });
outcome.verified = Number(verified.details.sequence);
const methods = await adminV2.listAuthenticationMethodTypes({ userId });
outcome.adminMethods = methods.authMethodTypes.map((type) => AuthenticationMethodType[type]);
const factors = await management.listHumanAuthFactors({ userId });
outcome.adminFactors = factors.result.map(
  (factor) => `${AuthFactorState[factor.state]}:${factor.type.case}`,
);
const removed = await management.removeHumanAuthFactorOTP({ userId });
outcome.adminRemoved = Number(removed.details.sequence);
const after = await user.listAuthenticationMethodTypes({ userId });
outcome.methodsAfterRemoval = after.authMethodTypes.length;
const again = await user.registerTOTP({ userId });
outcome.registeredAgain = Number(again.details.sequence);
try {
  await other.registerTOTP({ userId });
  outcome.denied = "not refused";
} catch (error) {
  const connectError = ConnectError.from(error);
  const [detail] = connectError.findDetails(ErrorDetailSchema);
  outcome.denied = { code: connectError.code, id: detail?.id ?? null };
}
process.stdout.write(`${JSON.stringify(outcome)}\n`);

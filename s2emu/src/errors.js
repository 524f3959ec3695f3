// Error model of the S2 REST API as s2-lite serves it (s2-api.md §2).
// Three body shapes: {"code","message"}, the 412 append-condition body, and
// the 416 {"tail":…} body. The last two carry no `code`.

export const CODE_STATUS = Object.freeze({
  bad_frame: 400,
  bad_header: 400,
  bad_json: 400,
  bad_path: 400,
  bad_proto: 400,
  bad_query: 400,
  decryption_failed: 400,
  authn: 401,
  permission_denied: 403,
  quota_exhausted: 403,
  access_token_not_found: 404,
  basin_not_found: 404,
  stream_not_found: 404,
  request_timeout: 408,
  basin_deletion_pending: 409,
  resource_already_exists: 409,
  stream_deletion_pending: 409,
  transaction_conflict: 409,
  invalid: 422,
  rate_limited: 429,
  client_hangup: 499,
  other: 500,
  storage: 500,
  not_implemented: 501,
  hot_server: 502,
  server_draining: 503,
  unavailable: 503,
  upstream_timeout: 504,
});

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status
   * @param {object} body JSON body sent to the client
   */
  constructor(status, body) {
    super(body.message ?? JSON.stringify(body));
    this.status = status;
    this.body = body;
  }
}

/** A standard `{"code","message"}` error. */
export function apiError(code, message) {
  const status = CODE_STATUS[code];
  if (status === undefined) throw new Error(`unknown error code ${code}`);
  return new ApiError(status, { code, message });
}

export const badJson = (message) => apiError('bad_json', message);
export const invalid = (message) => apiError('invalid', message);
export const badHeader = (message) => apiError('bad_header', message);
export const badQuery = (message) => apiError('bad_query', message);

export function basinNotFound(basin) {
  return apiError('basin_not_found', `basin \`${basin}\` not found`);
}

export function streamNotFound(basin, stream) {
  return apiError('stream_not_found', `stream \`${stream}\` in basin \`${basin}\` not found`);
}

export function basinDeletionPending(basin) {
  return apiError('basin_deletion_pending', `basin \`${basin}\` is being deleted`);
}

export function streamDeletionPending() {
  return apiError('stream_deletion_pending', 'stream deletion pending');
}

/** 412 with `{"fencing_token_mismatch": "<current token>"}`. */
export function fencingTokenMismatch(current) {
  return new ApiError(412, { fencing_token_mismatch: current });
}

/** 412 with `{"seq_num_mismatch": <next seq_num>}`. */
export function seqNumMismatch(next) {
  return new ApiError(412, { seq_num_mismatch: next });
}

/** 416 with `{"tail": {"seq_num", "timestamp"}}`. */
export function unwritten(tail) {
  return new ApiError(416, { tail });
}

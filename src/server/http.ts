import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { z } from 'zod'
import { ActorError } from '../actor/index.js'
import { formatPath } from '../config/index.js'

/** An error an HTTP client sees: `{ "error": { code, message, param, type } }` with `status` (and any `headers`, such as Retry-After). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message)
  }
}

/** HTTP status for each error code an actor may reject with. */
const STATUS_OF_CODE: Record<string, number> = {
  invalid_request: 400,
  bad_message: 400,
  unknown_provider: 400,
  bad_context: 400,
  not_found: 404,
  model_not_found: 404,
  unknown_workflow: 404,
  run_over: 409,
  conflict: 409,
  rate_limit: 429,
  auth: 502,
  upstream: 502,
  timeout: 504,
  backpressure: 503,
  restarting: 503,
  crashed: 503,
  stopped: 503,
  no_such_actor: 503,
  backend_unavailable: 503,
  provider_unavailable: 503,
  cancelled: 499,
}

/** OpenAI's error `type` for a status, which its clients branch on. */
function errorType(status: number): string {
  if (status === 400 || status === 404 || status === 405 || status === 408 || status === 409 || status === 413 || status === 417 || status === 431) return 'invalid_request_error'
  if (status === 429) return 'rate_limit_error'
  if (status === 401 || status === 403) return 'authentication_error'
  return 'api_error'
}

export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error
  if (error instanceof ActorError) return new HttpError(STATUS_OF_CODE[error.code] ?? 500, error.code, error.message, paramOf(error), retryAfterOf(error))
  return new HttpError(500, 'internal', error instanceof Error ? error.message : String(error))
}

/** A Retry-After header when the rejection says how long to wait (`data.retryAfterS`, seconds). */
function retryAfterOf(error: ActorError): Record<string, string> {
  const seconds = (error.data as { retryAfterS?: unknown } | undefined)?.retryAfterS
  return typeof seconds === 'number' && seconds > 0 ? { 'retry-after': String(Math.ceil(seconds)) } : {}
}

/** The field an actor's rejection names (`data.param`), as HTTP's `param`. */
function paramOf(error: ActorError): string | null {
  const param = (error.data as { param?: unknown } | undefined)?.param
  return typeof param === 'string' ? param : null
}

/** The `error` object of an error body. */
export function errorFields(error: HttpError): { code: string; message: string; param: string | null; type: string } {
  return { code: error.code, message: error.message, param: error.param, type: errorType(error.status) }
}

export function errorBody(error: HttpError): string {
  return JSON.stringify({ error: errorFields(error) })
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendEncoded(res, status, JSON.stringify(body))
}

/** A body already serialised as JSON, with its length in UTF-8 bytes when that is known. */
export function sendEncoded(res: ServerResponse, status: number, json: string, bytes = Buffer.byteLength(json)): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes })
  res.end(json)
}

/** Sends `error` with its status and headers; `text` is its body, `errorBody(error)` unless a route words errors its own way. */
export function sendError(res: ServerResponse, error: HttpError, text = errorBody(error)): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  // Past the body limit the rest of the body is not wanted: the connection cannot be reused.
  const close = error.status === 413 || res.getHeader('connection') === 'close'
  res.writeHead(error.status, { ...error.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(close ? { connection: 'close' } : {}) })
  const req = res.req as IncomingMessage | undefined
  if (close && req !== undefined && !req.complete) {
    res.write(text)
    endAfterBody(req, res)
  } else res.end(text)
}

/** How much of a body that is refused unread the server reads and discards so that its client reads the answer. */
const REFUSED_BODY_DISCARD_BYTES = 16 * 1024 * 1024
/** How long the server waits for more of a refused body before it closes the connection anyway. */
const REFUSED_BODY_IDLE_MS = 1_000

/**
 * Ends a response whose connection closes once the client has sent the rest of a body nobody
 * reads. node destroys the socket as soon as such a response ends, and closing a socket with
 * unread bytes makes the kernel reset the connection: a client still sending its body, as one
 * that sends it at once does, gets EPIPE or ECONNRESET instead of the answer that is already
 * written (RFC 9112 §9.6, lingering close). The answer is whole when this is called (its
 * Content-Length is sent), so the client can act on it while the rest is discarded; the end
 * waits for the body's end, REFUSED_BODY_DISCARD_BYTES more of it, or REFUSED_BODY_IDLE_MS
 * without any.
 */
function endAfterBody(req: IncomingMessage, res: ServerResponse): void {
  let discarded = 0
  const end = (): void => {
    clearTimeout(idle)
    req.off('data', discard).off('end', end).off('close', end)
    res.end()
  }
  const idle = setTimeout(end, REFUSED_BODY_IDLE_MS).unref()
  const discard = (chunk: Buffer): void => {
    discarded += chunk.length
    if (discarded > REFUSED_BODY_DISCARD_BYTES) end()
    else idle.refresh()
  }
  req.on('data', discard).on('end', end).on('close', end)
  req.resume()
}

/**
 * An answer for a request node:http refused before troupe saw it (the `clientError` event:
 * `code` is llhttp's `HPE_…`, or ERR_HTTP_REQUEST_TIMEOUT), in the shape of every other error;
 * undefined for a connection that failed rather than a request that was refused (a reset, a
 * TLS failure), which has no one to answer.
 */
export function clientErrorOf(error: { code?: string | undefined; reason?: string | undefined }): HttpError | undefined {
  const code = error.code ?? ''
  if (code === 'HPE_HEADER_OVERFLOW') return new HttpError(431, 'headers_too_large', `the request line and headers are over ${maxHeaderSize} bytes`)
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return new HttpError(408, 'request_timeout', "the request's headers or body did not arrive in time")
  if (!code.startsWith('HPE_')) return undefined
  return new HttpError(400, 'bad_request', `the request is not valid HTTP/1.1: ${error.reason ?? code} (${code})`)
}

/** A whole HTTP/1.1 response carrying `error` and its request id, for a socket no ServerResponse is writing to; it closes the connection. */
export function rawErrorResponse(error: HttpError, requestId: string): string {
  const text = errorBody(error)
  return `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${text}`
}

/**
 * How deep arrays and objects may nest in a JSON body. JSON.parse copes with any depth, but the
 * body goes on to threads whose codec, like most serialisers, recurses: a body nested ten
 * thousand deep would exhaust its stack there.
 */
export const MAX_JSON_DEPTH = 256

/**
 * The JSON body, refused with 413 past `limit` bytes (declared or sent) and 400 when it is not
 * JSON or nests deeper than MAX_JSON_DEPTH. Read with plain listeners: an async iterator over
 * the request costs a measurable share of a small request.
 */
export function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) return Promise.reject(new HttpError(413, 'body_too_large', `the request body is ${declared} bytes; the limit is ${limit}`))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (): void => {
      req.off('data', onData).off('end', onEnd).off('error', onFail).off('close', onClose)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size <= limit) {
        chunks.push(chunk)
        return
      }
      done()
      req.pause()
      reject(new HttpError(413, 'body_too_large', `the request body is more than ${limit} bytes`))
    }
    const onEnd = (): void => {
      done()
      const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
      if (nestsDeeperThan(bytes, MAX_JSON_DEPTH)) return reject(new HttpError(400, 'invalid_request', `the request body nests arrays and objects more than ${MAX_JSON_DEPTH} deep`))
      const text = bytes.toString('utf8')
      if (text.trim() === '') return reject(new HttpError(400, 'invalid_request', 'the request needs a JSON body'))
      try {
        resolve(JSON.parse(text))
      } catch (error) {
        reject(new HttpError(400, 'invalid_request', `the request body is not valid JSON: ${(error as Error).message}`))
      }
    }
    const onFail = (error: Error): void => {
      done()
      reject(new HttpError(499, 'cancelled', `the request body was cut off: ${error.message}`))
    }
    const onClose = (): void => onFail(new Error('the client went away'))
    req.on('data', onData).on('end', onEnd).on('error', onFail).on('close', onClose)
  })
}

const OPEN_ARRAY = 0x5b
const OPEN_OBJECT = 0x7b
const CLOSE_ARRAY = 0x5d
const CLOSE_OBJECT = 0x7d
const QUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * Whether the JSON text in `bytes` opens more than `max` arrays and objects inside one another,
 * brackets inside strings aside. Iterative, and on UTF-8 bytes: the bytes of a multi-byte
 * character are never ASCII, so they cannot be taken for a quote or a bracket. A body with no
 * more than `max` opening brackets in all, nearly every one, is answered by two native scans.
 */
export function nestsDeeperThan(bytes: Uint8Array, max: number): boolean {
  let opening = 0
  for (const open of [OPEN_ARRAY, OPEN_OBJECT]) {
    for (let at = bytes.indexOf(open); at !== -1 && opening <= max; at = bytes.indexOf(open, at + 1)) opening++
  }
  if (opening <= max) return false
  let depth = 0
  let inString = false
  for (let at = 0; at < bytes.length; at++) {
    const byte = bytes[at]!
    if (inString) {
      if (byte === BACKSLASH) at++
      else if (byte === QUOTE) inString = false
    } else if (byte === QUOTE) inString = true
    else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++depth > max) return true
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) depth--
  }
  return false
}

/** Parses `value` with `schema`, or a 400 naming the first field that is wrong. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query'): z.infer<S> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const param = formatPath(issue.path as Array<string | number>)
  const message = param === '' ? `${where}: ${issue.message}` : `${param}: ${issue.message}`
  throw new HttpError(400, 'invalid_request', message, param === '' ? null : param)
}

/**
 * A server-sent event stream: `data: {json}` frames, ending with `data: [DONE]`, or with an
 * error frame when the stream fails part way.
 */
export class SseWriter {
  constructor(private readonly res: ServerResponse) {
    // A draining server has set `connection: close` already: keep-alive must not override it.
    const connection = res.hasHeader('connection') ? {} : { connection: 'keep-alive' }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...connection, 'x-accel-buffering': 'no' })
    res.flushHeaders()
  }

  /** Resolves once the frame is handed to the socket, or when the socket drains (backpressure). */
  send(data: unknown): Promise<void> | undefined {
    if (this.res.write(`data: ${JSON.stringify(data)}\n\n`)) return undefined
    return new Promise(resolve => {
      const done = (): void => {
        this.res.off('drain', done).off('close', done)
        resolve()
      }
      this.res.on('drain', done).on('close', done)
    })
  }

  done(): void {
    this.res.end('data: [DONE]\n\n')
  }

  fail(error: HttpError): void {
    this.res.end(`data: ${errorBody(error)}\n\n`)
  }
}

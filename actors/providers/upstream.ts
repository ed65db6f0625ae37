import type { ConnectionOptions } from 'node:tls'
import type { Logger } from 'pino'
import { Pool, errors, type Dispatcher } from 'undici'
import { ActorError, type Cancellation } from '../../src/index.js'

export interface UpstreamOptions {
  /** The provider id, for errors and logs. */
  readonly provider: string
  /** Origin plus optional base path: `http://host:port/v1`. */
  readonly baseUrl: string
  readonly headers?: Record<string, string>
  /** How long to wait for response headers, and between body chunks. */
  readonly timeoutMs: number
  /** Keep-alive connections held open to the upstream. */
  readonly connections: number
  /** How an https upstream is verified (`rejectUnauthorized: false` trusts any certificate), and the client certificate, if any. */
  readonly tls?: UpstreamTls
}

export type UpstreamTls = Pick<ConnectionOptions, 'rejectUnauthorized' | 'ca' | 'cert' | 'key' | 'minVersion' | 'ciphers'>

interface Call {
  readonly method: 'GET' | 'POST'
  readonly path: string
  readonly body?: unknown
  /** Cancelling aborts the upstream request. */
  readonly cancellation?: Cancellation
  /**
   * Where the call's failure is logged, with the id of the HTTP request it serves. Absent, the
   * caller reports failures itself (listModels: the reconciler, which would otherwise log every
   * cycle of an upstream that is down).
   */
  readonly report?: FailureReport
}

/** A logger for a call's failure, and the HTTP request id its lines carry. */
export interface FailureReport {
  readonly log: Logger
  readonly requestId: string | undefined
}

/** How loud an inference call's failure is logged: the upstream's trouble warns, the client's mistake is debug, a cancel is silent. */
const FAILURE_LEVEL: Readonly<Record<string, 'warn' | 'debug' | undefined>> = {
  upstream: 'warn',
  timeout: 'warn',
  auth: 'warn',
  rate_limit: 'warn',
  invalid_request: 'debug',
  model_not_found: 'debug',
}

/**
 * An HTTP upstream behind a keep-alive connection pool (undici). Every failure becomes an
 * ActorError with an inference code, named after the provider; a cancelled call aborts the
 * upstream request, so a client that goes away stops the work it started.
 */
export class Upstream {
  readonly #pool: Pool
  readonly #basePath: string
  readonly #options: UpstreamOptions

  constructor(options: UpstreamOptions) {
    const url = new URL(options.baseUrl)
    this.#basePath = url.pathname.replace(/\/+$/, '')
    this.#options = options
    this.#pool = new Pool(url.origin, {
      connections: options.connections,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeout: Math.min(options.timeoutMs, 10_000),
      ...(options.tls === undefined ? {} : { connect: options.tls }),
    })
  }

  /**
   * The JSON body of a successful response. Dispatched with a handler that gathers the bytes:
   * no body stream and no promise per chunk, which is most of what a small call costs here.
   */
  json<T>(call: Call): Promise<T> {
    const { cancellation } = call
    return new Promise<T>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined
      let status = 0
      const chunks: Buffer[] = []
      const unsubscribe = cancellation?.onCancel(() => controller?.abort(new errors.RequestAbortedError()))
      const fail = (error: unknown): void => {
        unsubscribe?.()
        reject(this.#failure(error, call))
      }
      this.#pool.dispatch(this.#request(call), {
        onRequestStart(started) {
          controller = started
          if (cancellation?.cancelled) started.abort(new errors.RequestAbortedError())
        },
        onResponseStart(_controller, statusCode) {
          status = statusCode
        },
        onResponseData(_controller, chunk) {
          chunks.push(chunk)
        },
        onResponseEnd: () => {
          unsubscribe?.()
          const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')
          if (status >= 400) return reject(this.#statusError(status, text, call))
          try {
            resolve(JSON.parse(text) as T)
          } catch (error) {
            reject(this.#failure(error, call))
          }
        },
        onResponseError: (_controller, error) => fail(error),
      })
    })
  }

  /** The body of a successful response, chunk by chunk; breaking out closes it. */
  async body(call: Call): Promise<AsyncIterable<Buffer>> {
    const response = await this.#send(call)
    const failure = (error: unknown): ActorError => this.#failure(error, call)
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for await (const chunk of response.body) yield chunk as Buffer
        } catch (error) {
          throw failure(error)
        } finally {
          response.body.destroy()
        }
      },
    }
  }

  close(): Promise<void> {
    return this.#pool.close()
  }

  #request(call: Call): Dispatcher.DispatchOptions {
    const headers: Record<string, string> = { accept: 'application/json', ...this.#options.headers }
    if (call.body !== undefined) headers['content-type'] = 'application/json'
    return {
      method: call.method,
      path: this.#basePath + call.path,
      headers,
      ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
    }
  }

  async #send(call: Call): Promise<Dispatcher.ResponseData> {
    let response: Dispatcher.ResponseData
    try {
      response = await this.#pool.request({ ...this.#request(call), ...(call.cancellation === undefined ? {} : { signal: signalOf(call.cancellation) }) })
    } catch (error) {
      throw this.#failure(error, call)
    }
    if (response.statusCode < 400) return response
    const text = await response.body.text().catch(() => '')
    throw this.#statusError(response.statusCode, text, call)
  }

  #statusError(status: number, text: string, call: Call): ActorError {
    return this.#reported(this.#statusErrorOf(status, text, call), call)
  }

  #statusErrorOf(status: number, text: string, call: Call): ActorError {
    const detail = upstreamMessage(text) ?? `HTTP ${status}`
    const where = `provider '${this.#options.provider}': ${call.method} ${call.path}`
    const data = { status }
    if (status === 400 || status === 422) return new ActorError('invalid_request', `${where}: ${detail}`, data)
    if (status === 404) return new ActorError('model_not_found', `${where}: ${detail}`, data)
    if (status === 429) return new ActorError('rate_limit', `${where}: rate limited: ${detail}`, data)
    if (status === 401 || status === 403) return new ActorError('auth', `${where}: credentials refused: ${detail}`, data)
    if (status === 408 || status === 504) return new ActorError('timeout', `${where}: upstream timed out: ${detail}`, data)
    return new ActorError('upstream', `${where}: upstream failed with HTTP ${status}: ${detail}`, data)
  }

  /** `error` as an ActorError with an inference code, logged (call.report) unless it is one already, which was. */
  #failure(error: unknown, call: Call): ActorError {
    if (error instanceof ActorError) return error
    return this.#reported(this.#failureOf(error, call), call)
  }

  #failureOf(error: unknown, call: Call): ActorError {
    const where = `provider '${this.#options.provider}': ${call.method} ${call.path}`
    if (error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError || error instanceof errors.ConnectTimeoutError) {
      return new ActorError('timeout', `${where}: no answer within ${this.#options.timeoutMs} ms`)
    }
    if (error instanceof errors.RequestAbortedError || (error as Error).name === 'AbortError') {
      return new ActorError('cancelled', `${where}: aborted by the caller`)
    }
    const code = (error as { code?: string }).code
    const reason = code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ECONNRESET' ? `cannot reach ${new URL(this.#options.baseUrl).origin} (${code})` : describe(error)
    return new ActorError('upstream', `${where}: ${reason}`)
  }

  /** Logs `failure` where `call.report` says, with its request id; returns it. */
  #reported(failure: ActorError, call: Call): ActorError {
    const level = FAILURE_LEVEL[failure.code]
    if (call.report !== undefined && level !== undefined) {
      call.report.log[level]({ request_id: call.report.requestId, provider: this.#options.provider, code: failure.code, err: failure }, 'upstream call failed')
    }
    return failure
  }
}

/** Where an inference call's failure is logged: the provider's log, with the HTTP request id its message carries. */
export function reportTo(log: Logger, msg: { readonly request_id?: string | undefined }): FailureReport {
  return { log, requestId: msg.request_id }
}

/** An AbortSignal that follows a Cancellation, for undici's request(): streaming calls only. */
function signalOf(cancellation: Cancellation): AbortSignal {
  const controller = new AbortController()
  cancellation.onCancel(() => controller.abort())
  return controller.signal
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : ''
  return message + cause
}

/** The error message an OpenAI-style or Ollama-style error body carries, if any. */
export function upstreamMessage(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown }
    if (typeof body.error === 'string') return body.error
    if (typeof body.error === 'object' && body.error !== null && typeof (body.error as { message?: unknown }).message === 'string') return (body.error as { message: string }).message
    if (typeof body.message === 'string') return body.message
  } catch {
    // not JSON: the text itself, trimmed, says what went wrong
  }
  const trimmed = text.trim().slice(0, 500)
  return trimmed.length > 0 ? trimmed : undefined
}

/** Lines of a chunked body, without their line ends. */
export async function* lines(body: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let pending = ''
  for await (const chunk of body) {
    pending += chunk.toString('utf8')
    let end: number
    while ((end = pending.indexOf('\n')) !== -1) {
      yield pending.slice(0, end).replace(/\r$/, '')
      pending = pending.slice(end + 1)
    }
  }
  if (pending.length > 0) yield pending
}

/** The `data` of each server-sent event (multi-line data joined with newlines). */
export async function* sseData(body: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let data: string[] = []
  for await (const line of lines(body)) {
    if (line === '') {
      if (data.length > 0) yield data.join('\n')
      data = []
    } else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5))
    // comments (':') and other fields (event, id, retry) carry nothing an OpenAI stream needs
  }
  if (data.length > 0) yield data.join('\n')
}

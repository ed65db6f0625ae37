import { ActorError } from './errors.js'

/** A thrown value as data that can cross a thread, for logs and supervisor reports. */
export interface FailureData {
  readonly name: string
  readonly message: string
  readonly code?: string
  readonly stack?: string
}

export function describeFailure(thrown: unknown): FailureData | null {
  if (thrown === undefined || thrown === null) return null
  if (thrown instanceof Error) {
    const code = thrown instanceof ActorError ? thrown.code : (thrown as { code?: unknown }).code
    return {
      name: thrown.name,
      message: thrown.message,
      ...(typeof code === 'string' ? { code } : {}),
      ...(thrown.stack !== undefined ? { stack: thrown.stack } : {}),
    }
  }
  return { name: 'NonError', message: String(thrown) }
}

/** Rebuilds a reported failure as an Error, so logs and supervisor events carry a real error. */
export function failureToError(data: FailureData | null): Error {
  if (data === null) return new Error('unknown failure')
  const error = data.code === undefined ? new Error(data.message) : new ActorError(data.code, data.message)
  error.name = data.name
  if (data.stack !== undefined) error.stack = data.stack
  return error
}

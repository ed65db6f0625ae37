import type { ChatCompletion, ChatCompletionChunk, ChatLogprobs, ToolCallDelta } from '../../actors/providers/inference/protocol.js'

interface ToolCall {
  id: string
  type: string
  function: { name: string; arguments: string }
}

interface AssembledChoice {
  role: string
  /** Null until a delta carries content: a choice that only calls tools has none. */
  content: string | null
  refusal: string | null
  readonly toolCalls: Map<number, ToolCall>
  logprobs: { content: unknown[] | null; refusal: unknown[] | null } | null
  finishReason: string | null
}

/**
 * Builds the chat completion a stream amounts to, for the inference store, as OpenAI's stream
 * defines the deltas: content and refusal are concatenated; a tool call's fragments share its
 * `index`, the first bringing `id`, `type` and `function.name`, each a piece of
 * `function.arguments`; each chunk's logprobs are those of its own tokens.
 */
export class CompletionAssembler {
  #first: ChatCompletionChunk | undefined
  #choices = new Map<number, AssembledChoice>()
  #usage: ChatCompletion['usage']

  add(chunk: ChatCompletionChunk): void {
    this.#first ??= chunk
    if (chunk.usage) this.#usage = chunk.usage
    for (const choice of chunk.choices ?? []) {
      let into = this.#choices.get(choice.index)
      if (into === undefined) {
        into = { role: 'assistant', content: null, refusal: null, toolCalls: new Map(), logprobs: null, finishReason: null }
        this.#choices.set(choice.index, into)
      }
      const delta = choice.delta ?? {}
      if (delta.role !== undefined) into.role = delta.role
      if (typeof delta.content === 'string') into.content = (into.content ?? '') + delta.content
      if (typeof delta.refusal === 'string') into.refusal = (into.refusal ?? '') + delta.refusal
      for (const fragment of delta.tool_calls ?? []) addToolCall(into.toolCalls, fragment)
      if (choice.logprobs !== undefined && choice.logprobs !== null) into.logprobs = addLogprobs(into.logprobs, choice.logprobs)
      if (choice.finish_reason !== null && choice.finish_reason !== undefined) into.finishReason = choice.finish_reason
    }
  }

  completion(): ChatCompletion | undefined {
    const first = this.#first
    if (first === undefined) return undefined
    const choices = [...this.#choices].sort(([a], [b]) => a - b).map(([index, c]) => choiceOf(index, c))
    return { id: first.id, object: 'chat.completion', created: first.created, model: first.model, choices, ...(this.#usage ? { usage: this.#usage } : {}) }
  }
}

function addToolCall(calls: Map<number, ToolCall>, fragment: ToolCallDelta): void {
  let call = calls.get(fragment.index)
  if (call === undefined) {
    call = { id: '', type: 'function', function: { name: '', arguments: '' } }
    calls.set(fragment.index, call)
  }
  if (fragment.id !== undefined) call.id = fragment.id
  if (fragment.type !== undefined) call.type = fragment.type
  if (fragment.function?.name !== undefined) call.function.name = fragment.function.name
  if (fragment.function?.arguments !== undefined) call.function.arguments += fragment.function.arguments
}

function addLogprobs(into: AssembledChoice['logprobs'], more: ChatLogprobs): NonNullable<AssembledChoice['logprobs']> {
  const join = (a: unknown[] | null | undefined, b: unknown[] | null | undefined): unknown[] | null => (a == null && b == null ? null : [...(a ?? []), ...(b ?? [])])
  return { content: join(into?.content, more.content), refusal: join(into?.refusal, more.refusal) }
}

function choiceOf(index: number, c: AssembledChoice): ChatCompletion['choices'][number] {
  const toolCalls = [...c.toolCalls].sort(([a], [b]) => a - b).map(([, call]) => call)
  // A choice that calls tools has null content, as OpenAI returns it whole, even when the stream sent empty strings.
  const content = toolCalls.length > 0 && c.content === '' ? null : c.content
  const message: ChatCompletion['choices'][number]['message'] = { role: c.role, content }
  if (c.refusal !== null) message['refusal'] = c.refusal
  if (toolCalls.length > 0) message['tool_calls'] = toolCalls
  return { index, message, finish_reason: c.finishReason, ...(c.logprobs === null ? {} : { logprobs: c.logprobs }) }
}

import type { ChatCompletion, ChatCompletionChunk } from '../../actors/providers/inference/protocol.js'

/** Builds the chat completion a stream amounts to, for the inference store. */
export class CompletionAssembler {
  #first: ChatCompletionChunk | undefined
  #choices = new Map<number, { content: string; role: string; finish_reason: string | null }>()
  #usage: ChatCompletion['usage']

  add(chunk: ChatCompletionChunk): void {
    this.#first ??= chunk
    if (chunk.usage) this.#usage = chunk.usage
    for (const choice of chunk.choices ?? []) {
      const into = this.#choices.get(choice.index) ?? { content: '', role: 'assistant', finish_reason: null }
      if (typeof choice.delta?.content === 'string') into.content += choice.delta.content
      if (choice.delta?.role !== undefined) into.role = choice.delta.role
      if (choice.finish_reason !== null && choice.finish_reason !== undefined) into.finish_reason = choice.finish_reason
      this.#choices.set(choice.index, into)
    }
  }

  completion(): ChatCompletion | undefined {
    const first = this.#first
    if (first === undefined) return undefined
    const choices = [...this.#choices].sort(([a], [b]) => a - b).map(([index, c]) => ({ index, message: { role: c.role, content: c.content }, finish_reason: c.finish_reason }))
    return { id: first.id, object: 'chat.completion', created: first.created, model: first.model, choices, ...(this.#usage ? { usage: this.#usage } : {}) }
  }
}

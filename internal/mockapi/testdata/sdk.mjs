// Calls the mock through the official OpenAI Node SDK and prints what the SDK
// made of each answer as one JSON object. Run by sdk_test.go with MOCK_BASE_URL
// and MOCK_KEY set; mimo-v2.6-flash must be limited to 1 request a minute.
import OpenAI from 'openai';

const baseURL = process.env.MOCK_BASE_URL;
const apiKey = process.env.MOCK_KEY;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });
const out = {};

function describe(err) {
  const h = err.headers;
  const header = (name) => (h && typeof h.get === 'function' ? h.get(name) : h?.[name]) ?? null;
  return {
    name: err.constructor?.name ?? null,
    api_error: err instanceof OpenAI.APIError,
    rate_limit_error: err instanceof OpenAI.RateLimitError,
    authentication_error: err instanceof OpenAI.AuthenticationError,
    not_found_error: err instanceof OpenAI.NotFoundError,
    bad_request_error: err instanceof OpenAI.BadRequestError,
    status: err.status ?? null,
    code: err.code ?? null,
    type: err.type ?? null,
    param: err.param ?? null,
    retry_after: header('retry-after'),
    retry_after_ms: header('retry-after-ms'),
    request_id: header('x-request-id'),
  };
}

async function attempt(fn) {
  try {
    return { ok: await fn() };
  } catch (err) {
    return { error: describe(err) };
  }
}

out.chat = await attempt(async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'mimo-v2.6-pro', messages: [{ role: 'user', content: 'Hello from the SDK' }], temperature: 0.7 })
    .withResponse();
  const m = data.choices[0].message;
  return {
    id: data.id, object: data.object, model: data.model, content: m.content, reasoning_content: m.reasoning_content ?? null,
    finish_reason: data.choices[0].finish_reason, usage: data.usage, request_id: response.headers.get('x-request-id'),
  };
});

out.stream = await attempt(async () => {
  const stream = await client.chat.completions.create({
    model: 'mimo-v2.6-pro', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Stream through the SDK' }],
  });
  let content = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      content += c.delta?.content ?? '';
      finish = c.finish_reason ?? finish;
    }
    usage = chunk.usage ?? usage;
  }
  return { content, finish_reason: finish, total_tokens: usage?.total_tokens ?? null };
});

out.speech = await attempt(async () => {
  const r = await client.chat.completions.create({
    model: 'mimo-v2.5-tts', audio: { format: 'wav', voice: 'mimo_default' },
    messages: [{ role: 'assistant', content: 'Hello in a voice.' }],
  });
  const a = r.choices[0].message.audio;
  return { riff: Buffer.from(a.data, 'base64').subarray(0, 4).toString('latin1'), transcript: a.transcript };
});

// The first call to mimo-v2.6-flash uses its one request a minute; the second is limited.
out.rate_limit_first = await attempt(async () => (await client.chat.completions.create({
  model: 'mimo-v2.6-flash', messages: [{ role: 'user', content: 'one' }],
})).choices[0].finish_reason);
out.rate_limit = await attempt(() => client.chat.completions.create({
  model: 'mimo-v2.6-flash', messages: [{ role: 'user', content: 'two' }],
}));

const wrongKey = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
out.auth = await attempt(() => wrongKey.chat.completions.create({
  model: 'mimo-v2.6-pro', messages: [{ role: 'user', content: 'hi' }],
}));

out.not_found = await attempt(() => client.chat.completions.create({
  model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }],
}));

out.bad_request = await attempt(() => client.chat.completions.create({
  model: 'mimo-v2.6-pro', messages: [{ role: 'user', content: 'hi' }], temperature: 5,
}));

out.models = await attempt(async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  return ids;
});

process.stdout.write(JSON.stringify(out) + '\n');

// An OpenAI Batch API script as its users write it, from the SDK's documented
// API, pointed at mimoq with only baseURL and apiKey changed. It prints what
// the SDK made of each step as one JSON object; openai_test.go checks it.
//
// Environment: MIMOQ_BASE_URL (…/openai/v1), MIMOQ_TOKEN, and the input files
// BATCH_FILE (runs), PAUSED_FILE (its model's lane is paused), BAD_FILE (has
// an invalid line), plus FLASH_MODEL and GHOST_MODEL.
import fs from 'node:fs';
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.MIMOQ_BASE_URL, apiKey: process.env.MIMOQ_TOKEN, maxRetries: 2, timeout: 120_000 });
const out = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const terminal = ['completed', 'failed', 'expired', 'cancelled'];

function describe(err) {
  return {
    name: err.constructor?.name ?? null,
    api_error: err instanceof OpenAI.APIError,
    bad_request_error: err instanceof OpenAI.BadRequestError,
    not_found_error: err instanceof OpenAI.NotFoundError,
    status: err.status ?? null,
    code: err.code ?? null,
    param: err.param ?? null,
    message: err.message ?? String(err),
  };
}

async function attempt(fn) {
  try {
    return { ok: await fn() };
  } catch (err) {
    return { error: describe(err) };
  }
}

async function waitFor(id, until = terminal) {
  let batch = await client.batches.retrieve(id);
  const seen = [batch.status];
  while (!until.includes(batch.status)) {
    await sleep(250);
    batch = await client.batches.retrieve(id);
    if (seen[seen.length - 1] !== batch.status) seen.push(batch.status);
  }
  return { batch, seen };
}

async function content(fileID) {
  if (!fileID) return [];
  const res = await client.files.content(fileID);
  return (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function upload(path) {
  return client.files.create({ file: fs.createReadStream(path), purpose: 'batch' });
}

// The expiry takes a minute: start it first, finish it last.
const expiring = attempt(async () => {
  const file = await upload(process.env.PAUSED_FILE);
  const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '1m' });
  const { batch, seen } = await waitFor(created.id);
  return { batch, seen, errors: await content(batch.error_file_id) };
});

out.batch = await attempt(async () => {
  const file = await upload(process.env.BATCH_FILE);
  const listed = await client.files.retrieve(file.id);
  const created = await client.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
    metadata: { run: 'sdk-test' },
  });
  const { batch, seen } = await waitFor(created.id);
  return {
    file,
    listed,
    created_status: created.status,
    seen,
    batch,
    output: await content(batch.output_file_id),
    errors: await content(batch.error_file_id),
  };
});

out.cancel = await attempt(async () => {
  const file = await upload(process.env.PAUSED_FILE);
  const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  const cancelled = await client.batches.cancel(created.id);
  const { batch } = await waitFor(created.id);
  return { first: cancelled.status, batch, errors: await content(batch.error_file_id) };
});

out.bad_file = await attempt(async () => {
  const file = await upload(process.env.BAD_FILE);
  const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  return (await waitFor(created.id)).batch;
});

out.list = await attempt(async () => {
  const ids = [];
  for await (const b of client.batches.list({ limit: 2 })) ids.push(b.id);
  const first = await client.batches.list({ limit: 2 });
  return { ids, first_page: first.data.length, has_more: first.has_more };
});

out.chat = await attempt(async () => {
  const { data, response } = await client.chat.completions
    .create({ model: process.env.FLASH_MODEL, messages: [{ role: 'user', content: 'Hello through mimoq' }], max_tokens: 64 })
    .withResponse();
  return { id: data.id, object: data.object, content: data.choices[0].message.content, usage: data.usage, job: response.headers.get('x-mimoq-job-id') };
});

out.chat_bad_request = await attempt(() =>
  client.chat.completions.create({ model: process.env.FLASH_MODEL, messages: [{ role: 'user', content: 'hi' }], temperature: 5 }),
);

out.chat_api_refusal = await attempt(() =>
  client.chat.completions.create({ model: process.env.GHOST_MODEL, messages: [{ role: 'user', content: 'hi' }] }),
);

out.stream = await attempt(async () => {
  const stream = await client.chat.completions.create({
    model: process.env.FLASH_MODEL,
    messages: [{ role: 'user', content: 'Stream through mimoq' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, chunks, finish, usage };
});

out.models = await attempt(async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  return ids;
});

out.expired = await expiring;
console.log(JSON.stringify(out));

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASIN, withEmu } from './helpers.js';

test('basins: create, idempotent create, conflict, get, ensure, list, delete', () =>
  withEmu({ basins: [] }, async (_emu, c) => {
    const create = (name, opts = {}) => c.request('POST', '/v1/basins', { basin: null, json: { basin: name, ...opts.body }, headers: opts.headers });
    let r = await create('my-basin-1', { headers: { 's2-request-token': 'tok1' } });
    assert.equal(r.status, 201);
    assert.equal(r.headers['s2-provision-result'], 'created');
    assert.equal(r.json.name, 'my-basin-1');
    assert.equal(r.json.state, 'active');
    assert.equal(r.json.location, null);
    assert.equal(r.json.deleted_at, null);
    r = await create('my-basin-1', { headers: { 's2-request-token': 'tok1' } });
    assert.equal(r.status, 201);
    assert.equal(r.headers['s2-provision-result'], 'noop');
    r = await create('my-basin-1');
    assert.equal(r.status, 409);
    assert.deepEqual(r.json, { code: 'resource_already_exists', message: 'basin `my-basin-1` already exists' });
    r = await create('Bad_Name');
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'bad_json');

    r = await c.request('GET', '/v1/basins/my-basin-1', { basin: null });
    assert.deepEqual(r.json, { default_stream_config: null, stream_cipher: null, create_stream_on_append: false, create_stream_on_read: false });

    r = await c.request('PUT', '/v1/basins/my-basin-1', { basin: null, json: { config: { create_stream_on_append: true } } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['s2-provision-result'], 'updated');
    r = await c.request('PUT', '/v1/basins/my-basin-1', { basin: null, json: { config: { create_stream_on_append: true } } });
    assert.equal(r.headers['s2-provision-result'], 'noop');
    r = await c.request('PUT', '/v1/basins/other-basin', { basin: null });
    assert.equal(r.status, 201);
    assert.equal(r.headers['s2-provision-result'], 'created');

    r = await c.request('GET', '/v1/basins?limit=1', { basin: null });
    assert.deepEqual(r.json.basins.map((b) => b.name), ['my-basin-1']);
    assert.equal(r.json.has_more, true);
    r = await c.request('GET', '/v1/basins?start_after=my-basin-1', { basin: null });
    assert.deepEqual(r.json.basins.map((b) => b.name), ['other-basin']);
    r = await c.request('GET', '/v1/basins?prefix=oth', { basin: null });
    assert.deepEqual(r.json.basins.map((b) => b.name), ['other-basin']);

    r = await c.request('DELETE', '/v1/basins/other-basin', { basin: null });
    assert.equal(r.status, 202);
    assert.equal(r.headers['content-length'], '0');
    assert.equal(r.headers['content-type'], undefined);
    r = await c.request('GET', '/v1/basins/other-basin', { basin: null });
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { code: 'basin_not_found', message: 'basin `other-basin` not found' });
  }));

test('streams: s2-basin header is required and validated', () =>
  withEmu({}, async (_emu, c) => {
    let r = await c.request('GET', '/v1/streams', { basin: null });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { code: 'bad_header', message: 'Missing header `s2-basin`' });
    r = await c.request('GET', '/v1/streams', { basin: 'x' });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'bad_header');
    assert.match(r.json.message, /^Invalid header `s2-basin`: /);
    r = await c.append('s', { records: [{ body: 'x' }] }, { basin: null });
    assert.equal(r.json.message, 'Missing header `s2-basin`');
    // Authorization is accepted and ignored
    r = await c.request('GET', '/v1/streams', { headers: { authorization: 'Bearer whatever' } });
    assert.equal(r.status, 200);
  }));

test('streams: create, conflict, idempotent create, get config, ensure replaces, list, delete', () =>
  withEmu({}, async (_emu, c) => {
    let r = await c.createStream('s1', { retention_policy: { infinite: {} } }, { headers: { 's2-request-token': 't' } });
    assert.equal(r.status, 201);
    assert.equal(r.headers['s2-provision-result'], 'created');
    assert.deepEqual(Object.keys(r.json), ['name', 'created_at', 'deleted_at', 'cipher']);
    assert.match(r.json.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    r = await c.createStream('s1', { retention_policy: { infinite: {} } }, { headers: { 's2-request-token': 't' } });
    assert.equal(r.status, 201);
    assert.equal(r.headers['s2-provision-result'], 'noop');
    r = await c.createStream('s1');
    assert.equal(r.status, 409);
    assert.deepEqual(r.json, { code: 'resource_already_exists', message: `stream \`s1\` in basin \`${BASIN}\` already exists` });

    r = await c.request('GET', '/v1/streams/s1');
    assert.deepEqual(r.json, {
      storage_class: 'express',
      retention_policy: { infinite: {} },
      timestamping: { mode: 'client-prefer', uncapped: false },
      delete_on_empty: { min_age_secs: 0 },
    });
    // PUT without body resets to defaults (replace, not merge)
    r = await c.request('PUT', '/v1/streams/s1');
    assert.equal(r.status, 200);
    assert.equal(r.headers['s2-provision-result'], 'updated');
    r = await c.request('PUT', '/v1/streams/s1', { json: {} });
    assert.equal(r.headers['s2-provision-result'], 'noop');
    r = await c.request('GET', '/v1/streams/s1');
    assert.deepEqual(r.json.retention_policy, { age: 604800 });
    r = await c.request('PUT', '/v1/streams/s1', { body: 'x', headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'bad_json');
    r = await c.request('PATCH', '/v1/streams/s1', { json: { timestamping: { mode: 'arrival' } } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.timestamping, { mode: 'arrival', uncapped: false });

    r = await c.createStream('bad', { retention_policy: { age: 0 } });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json, { code: 'invalid', message: 'age must be greater than 0 seconds' });
    r = await c.request('POST', '/v1/streams', { body: '{"stream":"x"}' });
    assert.equal(r.status, 400);
    assert.equal(r.json.message, 'Expected request with `Content-Type: application/json`');

    r = await c.request('PUT', '/v1/streams/a%2Fb%2Fc');
    assert.equal(r.status, 201);
    assert.equal(r.json.name, 'a/b/c');
    r = await c.request('GET', '/v1/streams?prefix=a%2F');
    assert.deepEqual(r.json, { streams: [r.json.streams[0]], has_more: false });
    assert.equal(r.json.streams[0].name, 'a/b/c');
    r = await c.request('GET', '/v1/streams?limit=1');
    assert.equal(r.json.has_more, true);
    r = await c.request('GET', '/v1/streams', { basin: 'no-such-basin' });
    assert.deepEqual(r.json, { streams: [], has_more: false });

    r = await c.request('DELETE', '/v1/streams/a%2Fb%2Fc');
    assert.equal(r.status, 202);
    assert.equal(r.headers['content-length'], '0');
    r = await c.request('GET', '/v1/streams/a%2Fb%2Fc');
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { code: 'stream_not_found', message: `stream \`a/b/c\` in basin \`${BASIN}\` not found` });
    r = await c.request('DELETE', '/v1/streams/a%2Fb%2Fc');
    assert.equal(r.status, 404);
    // recreated stream starts again at seq_num 0
    await c.createStream('a/b/c');
    r = await c.tail('a/b/c');
    assert.deepEqual(r.json, { tail: { seq_num: 0, timestamp: 0 } });
  }));

test('streams: list start_after is exclusive in byte order, like the sort', () =>
  withEmu({}, async (_emu, c) => {
    // U+FFFD (ef bf bd) sorts before U+1F600 (f0 9f 98 80) by bytes, after it by UTF-16 units.
    for (const name of ['p\u{1F600}', 'p\uFFFD', 'pa']) await c.createStream(name);
    const list = async (after) =>
      (await c.request('GET', `/v1/streams?prefix=p&start_after=${encodeURIComponent(after)}`)).json.streams.map((s) => s.name);
    assert.deepEqual(await list(''), ['pa', 'p\uFFFD', 'p\u{1F600}']);
    assert.deepEqual(await list('p\uFFFD'), ['p\u{1F600}']);
    assert.deepEqual(await list('pa'), ['p\uFFFD', 'p\u{1F600}']);
  }));

test('streams: deletion pending window (--deletion-delay-ms) gives 409 and keeps deleted_at in list', () =>
  withEmu({ deletionDelayMs: 60_000 }, async (_emu, c) => {
    await c.createStream('s');
    assert.equal((await c.request('DELETE', '/v1/streams/s')).status, 202);
    assert.equal((await c.request('DELETE', '/v1/streams/s')).status, 202);
    const pending = { code: 'stream_deletion_pending', message: 'stream deletion pending' };
    assert.deepEqual((await c.append('s', { records: [{ body: 'x' }] })).json, pending);
    assert.deepEqual((await c.read('s', 'seq_num=0')).json, pending);
    assert.deepEqual((await c.tail('s')).json, pending);
    assert.deepEqual((await c.request('GET', '/v1/streams/s')).json, pending);
    assert.equal((await c.createStream('s')).status, 409);
    const list = await c.request('GET', '/v1/streams');
    assert.notEqual(list.json.streams[0].deleted_at, null);
  }));

test('data plane on missing basin/stream; auto-create per basin config', () =>
  withEmu({}, async (_emu, c) => {
    let r = await c.append('s', { records: [{ body: 'x' }] }, { basin: 'missing-basin' });
    assert.deepEqual(r.json, { code: 'basin_not_found', message: 'basin `missing-basin` not found' });
    r = await c.request('GET', '/v1/streams/s', { basin: 'missing-basin' });
    assert.equal(r.json.code, 'stream_not_found');
    r = await c.append('s', { records: [{ body: 'x' }] });
    assert.equal(r.status, 404);
    assert.equal(r.json.code, 'stream_not_found');
    await c.request('PATCH', `/v1/basins/${BASIN}`, { basin: null, json: { create_stream_on_append: true } });
    r = await c.append('s', { records: [{ body: 'x' }] });
    assert.equal(r.status, 200);
    r = await c.tail('t');
    assert.equal(r.status, 404);
    await c.request('PATCH', `/v1/basins/${BASIN}`, { basin: null, json: { create_stream_on_read: true } });
    r = await c.tail('t');
    assert.deepEqual(r.json, { tail: { seq_num: 0, timestamp: 0 } });
  }));

test('unknown routes are empty 404, wrong methods empty 405; lite extras', () =>
  withEmu({}, async (_emu, c) => {
    let r = await c.request('GET', '/v1/nope');
    assert.equal(r.status, 404);
    assert.equal(r.text, '');
    r = await c.request('DELETE', '/v1/streams');
    assert.equal(r.status, 405);
    assert.equal(r.text, '');
    r = await c.request('GET', '/health');
    assert.equal(r.text, 'OK');
    r = await c.request('GET', '/v1/access-tokens', { basin: null });
    assert.equal(r.status, 501);
    assert.equal(r.json.code, 'not_implemented');
  }));

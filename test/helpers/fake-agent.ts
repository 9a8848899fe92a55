// A scripted agent for tests that need to say exactly what an agent says, when: it registers and
// heartbeats over the real AgentLink gRPC API and takes its dispatches from the real NATS subject, but
// runs nothing — the test decides each report. (Real agents are in test/helpers/stack.ts.)
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { loadProto, channelOptions } from '../../shared/proto.js';
import type { AgentLinkClient } from '../../shared/proto/gen/trainyard/v1/AgentLink.js';
import type { Stack } from './stack.js';

export interface FakeDispatch { run_id: string; lease: number; attempt: number; output_prefix: string; gpu_indices: number[]; [k: string]: unknown }

export class FakeAgent {
  readonly dispatches: FakeDispatch[] = [];
  /**
   * What its heartbeats say it holds, as a real agent's do: each attempt it claimed, until its
   * FinishAttempt was answered. A test deletes one to play an agent that forgot it (a lost reply).
   */
  readonly held = new Map<string, { lease: number; attempt: number }>();
  /** The doorbells it heard, as sent. */
  readonly bells: { run_id: string; attempt: number; package_sha256?: string }[] = [];
  #waiters: ((d: FakeDispatch) => void)[] = [];
  #beat: NodeJS.Timeout | null = null;
  session = 0;
  /** The credential the scheduler issued at Register (with the stack's join token). */
  credential = '';
  /** What its Register presented as its identity (a restart from its work dir presents it again). */
  identity = randomBytes(16).toString('hex');
  /** Resolves once Register returned the credential: a doorbell may ring before that, and claims with it. */
  #registered: () => void = () => {};
  readonly #ready = new Promise<void>((resolve) => { this.#registered = resolve; });
  /** What its calls present; `call(..., { auth })` presents something else (or nothing) for one call. */
  get auth(): Record<string, string> { return { 'trainyard-agent': this.name, authorization: `Bearer ${this.credential}` }; }

  private constructor(readonly name: string, readonly client: AgentLinkClient, readonly nc: NatsConnection) {}

  /**
   * `readyDigest`: what its claims give as ready_package_sha256, from the doorbell's package digest hint
   * (absent: it claims as an agent that holds nothing ready). `claimAfterMs`: how long it waits after a
   * doorbell before it claims (a slow agent).
   */
  static async start(s: Stack, name: string, o: {
    cpus?: number; gpus?: number; readyDigest?: (hint: string) => string; claimAfterMs?: number; labels?: Record<string, string>; acceptProjects?: string[];
  } = {}): Promise<FakeAgent> {
    const proto = loadProto();
    const client = new proto.trainyard.v1.AgentLink(s.schedulerAddress, grpc.credentials.createInsecure(), channelOptions);
    const nc = await connect(s.natsOptions('agent'));
    const a = new FakeAgent(name, client, nc);
    nc.subscribe(`${s.prefix}.agent.${name}.dispatch`, {
      callback: (err, msg) => {
        if (err) return;
        // NATS rings the doorbell; the details (and the ack) come from ClaimAttempt, as for a real agent.
        const bell = JSON.parse(new TextDecoder().decode(msg.data)) as { run_id: string; attempt: number; package_sha256?: string };
        a.bells.push(bell);
        const ready = o.readyDigest?.(bell.package_sha256 ?? '') ?? '';
        a.#ready.then(() => new Promise((r) => setTimeout(r, o.claimAfterMs ?? 0))).then(() => a.call<FakeDispatch>('ClaimAttempt', { agent: name, run_id: bell.run_id, attempt: bell.attempt, ready_package_sha256: ready })).then((d) => {
          d.lease = Number(d.lease);
          a.held.set(d.run_id, { lease: d.lease, attempt: Number(d.attempt) });
          a.dispatches.push(d);
          for (const w of a.#waiters.splice(0)) w(d);
        }, () => {});
      },
    });
    await nc.flush();
    const res = await a.call<{ session: number; credential: string }>('Register', {
      name, hostname: 'fake', cpus: o.cpus ?? 4, memory_mb: 4096, labels: o.labels ?? {}, version: 'test', held: [], accept_projects: o.acceptProjects ?? [],
      identity: a.identity,
      gpus: Array.from({ length: o.gpus ?? 0 }, (_, i) => ({ index: i, uuid: `GPU-fake-${i}`, name: 'NVIDIA H100 80GB HBM3', memory_mb: 81559, run_id: '' })),
    }, { auth: { 'trainyard-agent': name, authorization: `Bearer ${s.joinToken}` } });
    a.session = Number(res.session);
    a.credential = res.credential;
    a.#registered();
    a.#beat = setInterval(() => { a.call('Heartbeat', { name, session: a.session, held: a.heldList(), draining: false, leaving: false }).catch(() => {}); }, 300);
    return a;
  }

  /** The held list its heartbeats send. */
  heldList(): { run_id: string; lease: number; attempt: number }[] {
    return [...this.held].map(([run_id, h]) => ({ run_id, ...h }));
  }

  call<T = Record<string, unknown>>(method: string, req: Record<string, unknown>, o: { auth?: Record<string, string> } = {}): Promise<T> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(o.auth ?? this.auth)) md.set(k, v);
    return new Promise((resolve, reject) => {
      const fn = (this.client as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: T) => void) => void>)[method]!;
      fn.call(this.client, req, md, { deadline: Date.now() + 30_000 }, (err, res) => {
        if (err) return reject(err);
        // An answered end report: the attempt is over, as far as this agent knows.
        if (method === 'FinishAttempt' && this.held.get(String(req.run_id))?.lease === Number(req.lease)) this.held.delete(String(req.run_id));
        resolve(res as T);
      });
    });
  }

  /** The next dispatch not yet taken by an earlier call. */
  #taken = 0;
  nextDispatch(timeoutMs = 30_000): Promise<FakeDispatch> {
    const d = this.dispatches[this.#taken];
    if (d) { this.#taken++; return Promise.resolve(d); }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: no dispatch within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push(() => { clearTimeout(t); resolve(this.dispatches[this.#taken++]!); });
    });
  }

  /** Its own heartbeats stop (the test beats for it, with what it wants the scheduler to hear). */
  stopBeats(): void {
    if (this.#beat) clearInterval(this.#beat);
    this.#beat = null;
  }

  async close(): Promise<void> {
    if (this.#beat) clearInterval(this.#beat);
    this.client.close();
    await this.nc.close();
  }
}

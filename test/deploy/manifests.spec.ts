// The Kubernetes deployment in deploy/: each kustomization is rendered with `kubectl kustomize`
// (offline), every object is validated against the Kubernetes schemas (kubernetes-models), and
// the properties the deployment promises are checked on what kubectl actually renders: probes and
// resources, one bank, no committed secret, images that are docker/Dockerfile's targets, and an
// environment each service's own loader accepts.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1';
import { loadSchedulerEnv, SchedulerEnvSchema } from '../../apps/scheduler/src/config/env.js';
import { BankEnvSchema, loadBankEnv } from '../../apps/bank/src/config/env.js';
import { BridgeEnvSchema } from '../../apps/bank/src/bridge/bridge-env.js';
import { parseCommandLine } from '../../apps/worker/src/options.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const kubectl = process.env.KUBECTL ?? 'kubectl';
/** What kustomize 5 says about the fields that kustomize 2.0 (kubectl 1.20) needs; nothing else may appear on stderr. */
const knownWarnings = [/^# Warning: 'bases' is deprecated\./, /^# Warning: 'patchesStrategicMerge' is deprecated\./];
const kustomizations = ['deploy/base', 'deploy/dev-chain'] as const;

// ---------------------------------------------------------------- rendering and schemas

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered objects are free-form JSON checked field by field */
type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [field: string]: any };

interface Rendered {
  dir: string;
  objects: K8sObject[];
}

function render(dir: string): Rendered {
  const run = spawnSync(kubectl, ['kustomize', resolve(root, dir)], { encoding: 'utf8', timeout: 60_000 });
  if ((run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error(
      `${kubectl} was not found: the deployment in deploy/ is rendered with \`kubectl kustomize\` and cannot be checked without it. ` +
        'Install kubectl (on Debian: apt-get install -y kubernetes-client), or set KUBECTL to its path.',
    );
  }
  if (run.error) throw new Error(`${kubectl} kustomize ${dir} did not run: ${run.error.message}`);
  if (run.status !== 0) throw new Error(`${kubectl} kustomize ${dir} failed (exit ${run.status}):\n${run.stderr}`);
  const unexpected = run.stderr.split('\n').filter((line) => line.trim() !== '' && !knownWarnings.some((known) => known.test(line)));
  if (unexpected.length > 0) throw new Error(`${kubectl} kustomize ${dir} printed:\n${unexpected.join('\n')}`);
  const documents = parseAllDocuments(run.stdout);
  if (!Array.isArray(documents)) throw new Error(`${kubectl} kustomize ${dir} rendered nothing`);
  const objects = documents.map((document, index) => {
    if (document.errors.length > 0) throw new Error(`document ${index} of ${dir} is not YAML: ${document.errors.map((error) => error.message).join('; ')}`);
    return document.toJS() as K8sObject;
  });
  return { dir, objects };
}

/** The schema of each kind the deployment uses; a kind outside this table fails the test until it is added. */
const models: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
};

function schemaProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const object of objects) {
    const name = `${object.kind}/${object.metadata?.name}`;
    const Model = models[`${object.apiVersion}/${object.kind}`];
    if (!Model) {
      problems.push(`${name}: no schema for ${object.apiVersion} ${object.kind} in the test's table`);
      continue;
    }
    try {
      new Model(object).validate();
    } catch (error) {
      problems.push(`${name}: ${(error as Error).message}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------- docker/Dockerfile

interface Stage {
  name: string;
  from: string;
  env: Record<string, string>;
  expose: number[];
  /** CMD and ENTRYPOINT in exec form, as written. */
  cmd: string[];
  entrypoint: string[];
  copiesFrom: string[];
}

function readDockerfile(): Stage[] {
  const stages: Stage[] = [];
  for (const raw of readFileSync(resolve(root, 'docker/Dockerfile'), 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [instruction, ...rest] = line.split(/\s+/);
    const argument = line.slice(instruction!.length).trim();
    const stage = stages[stages.length - 1];
    switch (instruction!.toUpperCase()) {
      case 'FROM': {
        const match = /^(\S+)\s+AS\s+(\S+)$/i.exec(argument);
        if (!match) throw new Error(`docker/Dockerfile: FROM without a stage name: ${line}`);
        stages.push({ name: match[2]!, from: match[1]!, env: {}, expose: [], cmd: [], entrypoint: [], copiesFrom: [] });
        break;
      }
      case 'ENV':
        for (const pair of rest) {
          const [key, value] = pair.split('=');
          if (value === undefined) throw new Error(`docker/Dockerfile: ENV in the key=value form only: ${line}`);
          stage!.env[key!] = value;
        }
        break;
      case 'EXPOSE':
        stage!.expose.push(...rest.map(Number));
        break;
      case 'CMD':
        stage!.cmd = JSON.parse(argument) as string[];
        break;
      case 'ENTRYPOINT':
        stage!.entrypoint = JSON.parse(argument) as string[];
        break;
      case 'COPY': {
        const from = /--from=(\S+)/.exec(argument);
        if (from) stage!.copiesFrom.push(from[1]!);
        break;
      }
    }
  }
  return stages;
}

/** A stage with everything it inherits from the stages it is built FROM. */
function resolveStage(stages: Stage[], name: string): Stage {
  const stage = stages.find((candidate) => candidate.name === name);
  if (!stage) throw new Error(`docker/Dockerfile has no stage ${name}`);
  const parent = stages.some((candidate) => candidate.name === stage.from) ? resolveStage(stages, stage.from) : null;
  if (!parent) return stage;
  return {
    ...stage,
    env: { ...parent.env, ...stage.env },
    expose: stage.expose.length > 0 ? stage.expose : parent.expose,
    cmd: stage.cmd.length > 0 ? stage.cmd : parent.cmd,
    entrypoint: stage.entrypoint.length > 0 ? stage.entrypoint : parent.entrypoint,
  };
}

/** The stages nothing else builds on: the images docker/Dockerfile is built for (--target). */
function imageTargets(stages: Stage[]): string[] {
  const used = new Set(stages.flatMap((stage) => [stage.from, ...stage.copiesFrom]));
  return stages.map((stage) => stage.name).filter((name) => !used.has(name));
}

// ---------------------------------------------------------------- reading rendered objects

interface PodOwner {
  object: K8sObject;
  pod: any;
  containers: any[];
}

function workloads(objects: K8sObject[]): PodOwner[] {
  return objects
    .filter((object) => object.kind === 'Deployment')
    .map((object) => {
      const pod = object.spec.template.spec;
      return { object, pod, containers: [...(pod.initContainers ?? []), ...pod.containers] };
    });
}

function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} rendered`);
  return found;
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

/** Quantities as bytes or cores: 512Mi, 1Gi, 500m, "2". */
function quantity(value: string | number): number {
  const match = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|k|M|G)?$/.exec(String(value));
  if (!match) throw new Error(`quantity ${value} not understood by the test`);
  const scale: Record<string, number> = { m: 1e-3, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 };
  return Number(match[1]) * (match[2] ? scale[match[2]]! : 1);
}

function containerPort(container: any, port: string | number): number | undefined {
  if (typeof port === 'number') return (container.ports ?? []).some((declared: any) => declared.containerPort === port) ? port : undefined;
  return (container.ports ?? []).find((declared: any) => declared.name === port)?.containerPort;
}

function heapMegabytes(words: string[]): number | null {
  for (const word of words) {
    const match = /^--max-old-space-size=(\d+)$/.exec(word);
    if (match) return Number(match[1]);
  }
  return null;
}

// ---------------------------------------------------------------- the checks (each returns its problems)

function resourceAndProbeProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const { object, pod, containers } of workloads(objects)) {
    if (typeof pod.terminationGracePeriodSeconds !== 'number') problems.push(`${object.metadata.name}: no terminationGracePeriodSeconds`);
    for (const container of containers) {
      const where = `${object.metadata.name}/${container.name}`;
      for (const kind of ['requests', 'limits'] as const) {
        for (const resource of ['cpu', 'memory'] as const) {
          if (container.resources?.[kind]?.[resource] === undefined) problems.push(`${where}: no ${kind}.${resource}`);
        }
      }
      const { requests, limits } = container.resources ?? {};
      if (requests?.memory && limits?.memory && quantity(requests.memory) > quantity(limits.memory)) problems.push(`${where}: memory request above its limit`);
      if (requests?.cpu && limits?.cpu && quantity(requests.cpu) > quantity(limits.cpu)) problems.push(`${where}: cpu request above its limit`);
      // A container that serves something is probed; one that serves nothing (the worker) cannot be.
      if ((container.ports ?? []).length === 0) continue;
      for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
        const spec = container[probe];
        if (!spec) {
          problems.push(`${where}: serves ports but has no ${probe}`);
          continue;
        }
        const port = spec.httpGet?.port ?? spec.tcpSocket?.port;
        if (port !== undefined && containerPort(container, port) === undefined) problems.push(`${where}: ${probe} names port ${port}, which the container does not declare`);
      }
    }
  }
  return problems;
}

function securityProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const { object, pod, containers } of workloads(objects)) {
    const name = object.metadata.name;
    if (pod.automountServiceAccountToken !== false) problems.push(`${name}: mounts a service account token it does not use`);
    if (pod.securityContext?.seccompProfile?.type !== 'RuntimeDefault') problems.push(`${name}: no RuntimeDefault seccomp profile`);
    for (const container of containers) {
      const where = `${name}/${container.name}`;
      const nonRoot = container.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
      // The images set no USER (root): runAsNonRoot alone would refuse to start them.
      const user = container.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
      if (nonRoot !== true) problems.push(`${where}: runAsNonRoot is not true`);
      if (!(typeof user === 'number' && user > 0)) problems.push(`${where}: no non-root runAsUser`);
      const context = container.securityContext ?? {};
      if (context.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation is not false`);
      if (context.privileged === true) problems.push(`${where}: privileged`);
      if (context.readOnlyRootFilesystem !== true) problems.push(`${where}: root filesystem is writable`);
      if (!(context.capabilities?.drop ?? []).includes('ALL')) problems.push(`${where}: does not drop ALL capabilities`);
      if ((context.capabilities?.add ?? []).length > 0) problems.push(`${where}: adds capabilities`);
    }
  }
  return problems;
}

/** Names of variables that hold credentials: only ever from a Secret. */
const credentialName = /TOKEN|SECRET|PASSWORD|_KEY$|^DATABASE_URL$|^REDIS_URL$/;

function secretProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const object of objects) {
    const name = `${object.kind}/${object.metadata.name}`;
    // Secrets are created by hand in the cluster (deploy/README.md), never committed.
    if (object.kind === 'Secret') problems.push(`${name}: a Secret is committed in deploy/ (create it with kubectl create secret instead)`);
    if (object.kind === 'ConfigMap') {
      for (const key of Object.keys(object.data ?? {})) if (credentialName.test(key)) problems.push(`${name}: credential ${key} in a ConfigMap`);
    }
    // Anything that looks like a credential, anywhere in the rendered text.
    const text = JSON.stringify(object);
    if (/0x[0-9a-fA-F]{64}/.test(text)) problems.push(`${name}: carries a 32-byte hex value (a private key?)`);
    if (/[0-9a-fA-F]{32,}/.test(text.replace(/0x[0-9a-fA-F]{40}(?![0-9a-fA-F])/g, ''))) problems.push(`${name}: carries a long hex string (a token?)`);
    if (/[a-z]+:\/\/[^/\s"@:]+:[^/\s"@]+@/.test(text)) problems.push(`${name}: carries a URL with a password`);
  }
  for (const { object, containers } of workloads(objects)) {
    for (const container of containers) {
      for (const variable of container.env ?? []) {
        if (credentialName.test(variable.name) && (variable.value !== undefined || !variable.valueFrom?.secretKeyRef)) {
          problems.push(`${object.metadata.name}/${container.name}: ${variable.name} is not taken from a Secret`);
        }
      }
    }
  }
  return problems;
}

function imageProblems(objects: K8sObject[], targets: string[]): string[] {
  const problems: string[] = [];
  for (const { object, containers } of workloads(objects)) {
    for (const container of containers) {
      const match = /^(?:.*\/)?([^/:@]+)(?::[^/@]+)?(?:@.+)?$/.exec(container.image ?? '');
      const repository = match?.[1];
      const target = repository?.startsWith('commune-') ? repository.slice('commune-'.length) : undefined;
      if (!target || !targets.includes(target)) {
        problems.push(`${object.metadata.name}/${container.name}: image ${container.image} is not commune-<target> for a target of docker/Dockerfile (${targets.join(', ')})`);
      } else if (target !== container.name) {
        problems.push(`${object.metadata.name}/${container.name}: runs image ${container.image}, the ${target} target, in a container named ${container.name}`);
      }
    }
  }
  return problems;
}

function bankProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const bank = find(objects, 'Deployment', 'bank');
  const podLabels = bank.spec.template.metadata.labels;
  if (bank.spec.replicas !== 1) problems.push(`the bank has replicas ${bank.spec.replicas}: it must be the one writer`);
  if (bank.spec.strategy?.type !== 'Recreate') problems.push(`the bank's strategy is ${bank.spec.strategy?.type ?? 'RollingUpdate (default)'}: an update would run two banks at once`);
  for (const object of objects) {
    if (object.kind === 'HorizontalPodAutoscaler' && object.spec.scaleTargetRef.name === 'bank') problems.push(`${object.metadata.name} autoscales the bank`);
    if (object.kind === 'Service' && selects(object.spec.selector, podLabels) && (object.spec.type ?? 'ClusterIP') !== 'ClusterIP') {
      problems.push(`Service ${object.metadata.name} exposes the bank's pod outside the cluster (${object.spec.type})`);
    }
  }
  const bankServices = objects.filter((object) => object.kind === 'Service' && selects(object.spec.selector, podLabels)).map((object) => object.metadata.name);
  for (const ingress of objects.filter((object) => object.kind === 'Ingress')) {
    for (const rule of ingress.spec.rules ?? []) {
      for (const path of rule.http?.paths ?? []) {
        if (bankServices.includes(path.backend?.service?.name)) problems.push(`Ingress ${ingress.metadata.name} routes ${path.path} to the bank`);
      }
    }
  }
  return problems;
}

function schedulerProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const scheduler = find(objects, 'Deployment', 'scheduler');
  const podLabels = scheduler.spec.template.metadata.labels;
  const container = scheduler.spec.template.spec.containers.find((candidate: any) => candidate.name === 'scheduler');
  // The autoscaler owns the count: a count in the manifest would undo its scaling at every apply.
  if (scheduler.spec.replicas !== undefined) problems.push(`the scheduler Deployment sets replicas ${scheduler.spec.replicas}, which every kubectl apply would force over the autoscaler's count`);
  for (const probe of ['startupProbe', 'readinessProbe'] as const) {
    const get = container?.[probe]?.httpGet;
    if (get?.path !== '/health' || containerPort(container, get.port) === undefined) problems.push(`the scheduler's ${probe} does not ask /health on its port`);
  }
  const pdb = objects.find((object) => object.kind === 'PodDisruptionBudget' && selects(object.spec.selector?.matchLabels, podLabels));
  if (!pdb) problems.push('no PodDisruptionBudget selects the scheduler pods');
  const hpa = objects.find((object) => object.kind === 'HorizontalPodAutoscaler' && object.spec.scaleTargetRef.kind === 'Deployment' && object.spec.scaleTargetRef.name === 'scheduler');
  if (pdb && !(typeof pdb.spec.maxUnavailable === 'number' && pdb.spec.maxUnavailable < (hpa?.spec.minReplicas ?? 1))) problems.push(`PodDisruptionBudget ${pdb.metadata.name} lets every replica go at once`);
  if (!hpa) problems.push('no HorizontalPodAutoscaler scales the scheduler');
  else {
    if (!(hpa.spec.minReplicas >= 2)) problems.push(`the autoscaler may scale the scheduler down to ${hpa.spec.minReplicas ?? 1} replica: not several`);
    if (!(hpa.spec.maxReplicas > hpa.spec.minReplicas)) problems.push('the autoscaler has no room to scale');
    if (!(hpa.spec.metrics ?? []).some((metric: any) => metric.type === 'Resource' && metric.resource?.name === 'cpu')) problems.push('the autoscaler does not scale on CPU');
    if (!container?.resources?.requests?.cpu) problems.push('CPU utilisation needs a CPU request on the scheduler');
  }
  const service = objects.find((object) => object.kind === 'Service' && selects(object.spec.selector, podLabels));
  if (!service) problems.push('no Service selects the scheduler pods');
  else {
    for (const port of service.spec.ports) if (containerPort(container, port.targetPort ?? port.port) === undefined) problems.push(`Service ${service.metadata.name} port ${port.name} targets a port the scheduler does not declare`);
    const routed = objects.some((object) => object.kind === 'Ingress' && (object.spec.rules ?? []).some((rule: any) => (rule.http?.paths ?? []).some((path: any) => {
      const backend = path.backend?.service;
      return backend?.name === service.metadata.name && service.spec.ports.some((port: any) => port.name === backend.port?.name || port.port === backend.port?.number);
    })));
    if (!routed) problems.push('no Ingress routes to a port of the scheduler Service');
  }
  return problems;
}

/** A container's environment as Kubernetes gives it to the process: image ENV, then envFrom, then env. */
function environmentOf(objects: K8sObject[], stage: Stage, container: any, secrets: Record<string, Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = { ...stage.env };
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) Object.assign(env, find(objects, 'ConfigMap', source.configMapRef.name).data ?? {});
    if (source.secretRef) {
      const secret = secrets[source.secretRef.name];
      if (secret) Object.assign(env, secret);
      else if (source.secretRef.optional !== true) throw new Error(`${container.name}: envFrom Secret ${source.secretRef.name} is not optional and not known to the test`);
    }
  }
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = String(variable.value);
    else if (variable.valueFrom?.secretKeyRef) {
      const { name, key, optional } = variable.valueFrom.secretKeyRef;
      const value = secrets[name]?.[key];
      if (value !== undefined) env[variable.name] = value;
      else if (optional !== true) throw new Error(`${container.name}: ${variable.name} needs key ${key} of Secret ${name}, unknown to the test`);
    } else if (variable.valueFrom?.configMapKeyRef) {
      const { name, key } = variable.valueFrom.configMapKeyRef;
      env[variable.name] = find(objects, 'ConfigMap', name).data[key];
    } else throw new Error(`${container.name}: ${variable.name} has a source the test does not read`);
  }
  return env;
}

/** The Secrets deploy/README.md has the operator create, with the keys the pods require; values made up for the test. */
const secretsForTest: Record<string, Record<string, string>> = {
  'scheduler-secrets': {
    DATABASE_URL: 'postgresql://commune_scheduler@db.internal:5432/commune',
    REDIS_URL: 'redis://redis.internal:6379',
    BANK_SERVICE_TOKEN: 'k'.repeat(64),
  },
  'bank-secrets': {
    DATABASE_URL: 'postgresql://commune_bank@db.internal:5432/commune',
    REDIS_URL: 'redis://redis.internal:6379',
    BANK_SERVICE_TOKEN: 'k'.repeat(64),
  },
};

function keysOf(schema: unknown): string[] {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  if (!shape) throw new Error('an env schema without a shape');
  return Object.keys(shape);
}

// ---------------------------------------------------------------- the tests

describe('deploy/: Kubernetes manifests rendered by kubectl kustomize', () => {
  const rendered: Record<string, Rendered> = {};
  const stages = readDockerfile();
  const targets = imageTargets(stages);

  beforeAll(() => {
    for (const dir of kustomizations) rendered[dir] = render(dir);
  });

  it('knows docker/Dockerfile targets to check images against', () => {
    expect(targets.sort()).toEqual(['bank', 'chain', 'scheduler', 'worker']);
  });

  it.each(kustomizations)('%s: every object passes the Kubernetes schema of its kind', (dir) => {
    const { objects } = rendered[dir]!;
    const kinds = objects.map((object) => `${object.kind}/${object.metadata.name}`);
    expect(kinds).toEqual(expect.arrayContaining(['Namespace/commune', 'Deployment/scheduler', 'Deployment/bank', 'Deployment/worker', 'Service/scheduler', 'Service/bank', 'PodDisruptionBudget/scheduler', 'HorizontalPodAutoscaler/scheduler', 'Ingress/scheduler']));
    expect(schemaProblems(objects)).toEqual([]);
    for (const object of objects) if (object.kind !== 'Namespace') expect(`${object.kind}/${object.metadata.name} in ${object.metadata.namespace}`).toBe(`${object.kind}/${object.metadata.name} in commune`);
  });

  it('the schema check refuses what the API server would refuse', () => {
    const scheduler = structuredClone(find(rendered['deploy/base']!.objects, 'Deployment', 'scheduler'));
    scheduler.spec.replicas = '2';
    scheduler.spec.template.spec.containers[0].resources.limits.memory = 'half a gig';
    const problems = schemaProblems([scheduler, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } }]);
    expect(problems.join('\n')).toMatch(/spec\/replicas must be integer/);
    expect(problems.join('\n')).toMatch(/limits\/memory/);
    expect(problems.join('\n')).toMatch(/Pod\/p: no schema/);
  });

  it.each(kustomizations)('%s: every container has requests and limits; every container that serves a port has readiness and liveness probes', (dir) => {
    const { objects } = rendered[dir]!;
    expect(resourceAndProbeProblems(objects)).toEqual([]);
    // The worker serves nothing: no port, so nothing to probe (the check above would demand probes for any port).
    const worker = find(objects, 'Deployment', 'worker').spec.template.spec.containers[0];
    expect(worker.ports).toBeUndefined();
    const broken = structuredClone(objects);
    const bank = find(broken, 'Deployment', 'bank').spec.template.spec.containers.find((container: any) => container.name === 'bank');
    delete bank.livenessProbe;
    delete bank.resources.limits.memory;
    expect(resourceAndProbeProblems(broken)).toEqual(['bank/bank: no limits.memory', 'bank/bank: serves ports but has no livenessProbe']);
  });

  it.each(kustomizations)('%s: the scheduler runs several replicas behind a Service and an Ingress, ready from /health, with a disruption budget and a CPU autoscaler', (dir) => {
    const { objects } = rendered[dir]!;
    expect(schedulerProblems(objects)).toEqual([]);
    const broken = structuredClone(objects);
    find(broken, 'Deployment', 'scheduler').spec.template.spec.containers[0].readinessProbe.httpGet.path = '/';
    find(broken, 'HorizontalPodAutoscaler', 'scheduler').spec.minReplicas = 1;
    expect(schedulerProblems(broken)).toEqual([
      "the scheduler's readinessProbe does not ask /health on its port",
      'PodDisruptionBudget scheduler lets every replica go at once',
      'the autoscaler may scale the scheduler down to 1 replica: not several',
    ]);
  });

  it.each(kustomizations)('%s: the bank is one writer: one replica, replaced by Recreate, reachable only inside the cluster', (dir) => {
    const { objects } = rendered[dir]!;
    expect(bankProblems(objects)).toEqual([]);
    const broken = structuredClone(objects);
    const bank = find(broken, 'Deployment', 'bank');
    bank.spec.replicas = 2;
    bank.spec.strategy = { type: 'RollingUpdate' };
    find(broken, 'Service', 'bank').spec.type = 'LoadBalancer';
    expect(bankProblems(broken)).toHaveLength(3);
  });

  it.each(kustomizations)('%s: no credential is committed: no Secret objects, credentials only from secretKeyRef', (dir) => {
    const { objects } = rendered[dir]!;
    expect(secretProblems(objects)).toEqual([]);
    const broken = structuredClone(objects);
    const scheduler = find(broken, 'Deployment', 'scheduler').spec.template.spec.containers[0];
    scheduler.env.find((variable: any) => variable.name === 'BANK_SERVICE_TOKEN').value = '0123456789abcdef0123456789abcdef';
    broken.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'leak' }, stringData: { DATABASE_URL: 'postgresql://commune:hunter2@db:5432/commune' } });
    expect(secretProblems(broken)).toEqual([
      'Deployment/scheduler: carries a long hex string (a token?)',
      'Secret/leak: a Secret is committed in deploy/ (create it with kubectl create secret instead)',
      'Secret/leak: carries a URL with a password',
      'scheduler/scheduler: BANK_SERVICE_TOKEN is not taken from a Secret',
    ]);
  });

  it.each(kustomizations)('%s: pods run as a non-root user, read-only, without capabilities or privilege escalation', (dir) => {
    const { objects } = rendered[dir]!;
    expect(securityProblems(objects)).toEqual([]);
    const broken = structuredClone(objects);
    delete find(broken, 'Deployment', 'worker').spec.template.spec.securityContext.runAsUser;
    expect(securityProblems(broken)).toEqual(['worker/worker: no non-root runAsUser']);
  });

  it.each(kustomizations)('%s: every image is the docker/Dockerfile target its container is named after, listening where the image says', (dir) => {
    const { objects } = rendered[dir]!;
    expect(imageProblems(objects, targets)).toEqual([]);
    for (const { object, containers } of workloads(objects)) {
      for (const container of containers) {
        const stage = resolveStage(stages, container.name);
        const ports = (container.ports ?? []).map((port: any) => port.containerPort);
        expect(`${object.metadata.name}/${container.name} ports ${ports}`).toBe(`${object.metadata.name}/${container.name} ports ${stage.expose}`);
        const port = container.env?.find((variable: any) => variable.name === 'PORT')?.value ?? stage.env.PORT;
        if (ports.length > 0 && port !== undefined) expect(Number(port)).toBe(ports[0]);
      }
    }
    const broken = structuredClone(objects);
    find(broken, 'Deployment', 'worker').spec.template.spec.containers[0].image = 'commune-scheduler:latest';
    find(broken, 'Deployment', 'bank').spec.template.spec.containers[0].image = 'registry.example/commune-portal:1.0';
    expect(imageProblems(broken, targets)).toHaveLength(2);
  });

  it.each(kustomizations)('%s: memory limits leave room for the V8 heap each service is capped at', (dir) => {
    const { objects } = rendered[dir]!;
    let capped = 0;
    for (const { object, containers } of workloads(objects)) {
      for (const container of containers) {
        const stage = resolveStage(stages, container.name);
        const nodeOptions = (container.env ?? []).find((variable: any) => variable.name === 'NODE_OPTIONS')?.value ?? '';
        const heap = heapMegabytes([...stage.entrypoint, ...stage.cmd, ...nodeOptions.split(/\s+/)]);
        if (heap === null) continue;
        capped++;
        // The limit holds the capped old space plus what lives outside it (new space, code, socket
        // buffers): a third of the heap, at least 256 MiB. The request need not: V8 grows the heap lazily.
        const room = Math.max(heap / 3, 256);
        expect({ container: `${object.metadata.name}/${container.name}`, fits: quantity(container.resources.limits.memory) >= (heap + room) * 1024 ** 2 }).toEqual({ container: `${object.metadata.name}/${container.name}`, fits: true });
      }
    }
    // The scheduler (the image's --max-old-space-size=1536: 50,000 connections at ~19 KB) and the bank (NODE_OPTIONS).
    expect(capped).toBe(2);
    expect(heapMegabytes(resolveStage(stages, 'scheduler').cmd)).toBe(1536);
  });

  it('the scheduler and the bank accept the environment their pods get, and set nothing they do not read', () => {
    const { objects } = rendered['deploy/base']!;
    const schedulerContainer = find(objects, 'Deployment', 'scheduler').spec.template.spec.containers[0];
    const schedulerEnv = environmentOf(objects, resolveStage(stages, 'scheduler'), schedulerContainer, secretsForTest);
    const scheduler = loadSchedulerEnv(schedulerEnv);
    expect(scheduler.HOST).toBe('0.0.0.0');
    expect(scheduler.PORT).toBe(schedulerContainer.ports[0].containerPort);
    expect(scheduler.BANK_SERVICE_TOKEN).toBe(secretsForTest['bank-secrets']!.BANK_SERVICE_TOKEN);
    // BANK_URL names the bank Service and its port.
    const bankUrl = new URL(scheduler.BANK_URL!);
    const bankService = find(objects, 'Service', bankUrl.hostname);
    expect(bankService.spec.ports.map((port: any) => port.port)).toContain(Number(bankUrl.port));
    expect(bankService.spec.selector).toEqual(find(objects, 'Deployment', 'bank').spec.selector.matchLabels);

    const bankContainer = find(objects, 'Deployment', 'bank').spec.template.spec.containers[0];
    const bank = loadBankEnv(environmentOf(objects, resolveStage(stages, 'bank'), bankContainer, secretsForTest));
    expect(bank.HOST).toBe('0.0.0.0');
    expect(bank.PORT).toBe(bankContainer.ports[0].containerPort);
    // Separate Postgres schemas and Redis prefixes: the two services share neither tables nor keys.
    expect(bank.DATABASE_SCHEMA).not.toBe(scheduler.DATABASE_SCHEMA);
    expect(bank.REDIS_PREFIX).not.toBe(scheduler.REDIS_PREFIX);

    const runtime = new Set(['NODE_ENV', 'NODE_OPTIONS']);
    const names = (container: any) => [...(container.env ?? []).map((variable: any) => variable.name), ...(container.envFrom ?? []).flatMap((source: any) => (source.configMapRef ? Object.keys(find(objects, 'ConfigMap', source.configMapRef.name).data) : []))];
    expect(names(schedulerContainer).filter((name: string) => !runtime.has(name) && !keysOf(SchedulerEnvSchema).includes(name))).toEqual([]);
    expect(names(bankContainer).filter((name: string) => !runtime.has(name) && !keysOf(BankEnvSchema).includes(name))).toEqual([]);
  });

  it('a stopping scheduler replica finishes its drain inside the grace period: preStop pause + SHUTDOWN_DRAIN_MS + time to close', () => {
    const { objects } = rendered['deploy/base']!;
    const pod = find(objects, 'Deployment', 'scheduler').spec.template.spec;
    const container = pod.containers[0];
    const scheduler = loadSchedulerEnv(environmentOf(objects, resolveStage(stages, 'scheduler'), container, secretsForTest));
    const command = container.lifecycle?.preStop?.exec?.command as string[] | undefined;
    const pauseSeconds = command?.[0] === 'sleep' ? Number(command[1]) : 0;
    // Readiness is what the drain turns off first (/health answers 503 `draining`).
    expect(container.readinessProbe.httpGet.path).toBe('/health');
    expect(scheduler.SHUTDOWN_NOT_READY_MS).toBeGreaterThan(0);
    // Closing (Nest shutdown: BullMQ, Redis, PostgreSQL) after the drain: 5 s of room.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(pauseSeconds + scheduler.SHUTDOWN_DRAIN_MS / 1000 + 5);
  });

  it('the worker command line parses, and points at the scheduler and bank Services', () => {
    const { objects } = rendered['deploy/base']!;
    const container = find(objects, 'Deployment', 'worker').spec.template.spec.containers[0];
    const parsed = parseCommandLine(container.args, { env: {}, defaultSandboxes: 1, readFile: () => { throw new Error('no files'); } });
    if (parsed.kind !== 'run') throw new Error(`the worker's args do not parse: ${JSON.stringify(parsed)}`);
    expect(parsed.options.schedulers).toHaveLength(1); // the Service: any replica serves the worker
    for (const [url, name] of [[parsed.options.schedulers[0]!, 'scheduler'], [parsed.options.bank!, 'bank']] as const) {
      const target = new URL(url);
      const service = find(objects, 'Service', target.hostname);
      expect(`${name} -> ${service.metadata.name}:${service.spec.ports.some((port: any) => port.port === Number(target.port))}`).toBe(`${name} -> ${name}:true`);
    }
    // One CPU of the limit per sandbox.
    expect(parsed.options.sandboxes).toBeLessThanOrEqual(quantity(container.resources.limits.cpu));
    // The worker's SIGTERM drain (running slices finish within 20 s, then results go) fits in the grace period.
    expect(find(objects, 'Deployment', 'worker').spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(25);
  });

  it('deploy/dev-chain: the bank reads the bridge configuration the chain sidecar writes, and starts after it', () => {
    const { objects } = rendered['deploy/dev-chain']!;
    const pod = find(objects, 'Deployment', 'bank').spec.template.spec;
    const chain = pod.initContainers.find((container: any) => container.name === 'chain');
    const bank = pod.containers.find((container: any) => container.name === 'bank');
    expect(chain.restartPolicy).toBe('Always');
    const out = chain.args[chain.args.indexOf('--out') + 1] as string;
    expect(chain.startupProbe.exec.command).toEqual(['test', '-f', out]);
    const env = environmentOf(objects, resolveStage(stages, 'bank'), bank, secretsForTest);
    expect(BridgeEnvSchema.safeParse(env).success).toBe(true);
    expect(env.BRIDGE_CONFIG_FILE).toBe(out);
    // The file's directory is one volume, mounted at the same path in both containers.
    const mountOf = (container: any) => container.volumeMounts.find((mount: any) => out.startsWith(`${mount.mountPath}/`));
    expect(mountOf(bank)?.name).toBeDefined();
    expect(mountOf(bank)).toMatchObject({ name: mountOf(chain)?.name, mountPath: mountOf(chain)?.mountPath });
    // The chain's data dir survives the pod: on a claim, not in the pod's scratch space.
    const dataDir = chain.args[chain.args.indexOf('--data-dir') + 1] as string;
    const dataVolume = chain.volumeMounts.find((mount: any) => dataDir === mount.mountPath || dataDir.startsWith(`${mount.mountPath}/`)).name;
    const claim = pod.volumes.find((volume: any) => volume.name === dataVolume).persistentVolumeClaim.claimName;
    expect(find(objects, 'PersistentVolumeClaim', claim).spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(new URL(env.CHAIN_RPC_URL!).port).toBe(String(chain.ports[0].containerPort));
  });

  it('deploy/README.md tells how to create every Secret the pods need, with every key they require', () => {
    const readme = readFileSync(resolve(root, 'deploy/README.md'), 'utf8');
    const required = new Map<string, Set<string>>();
    for (const dir of kustomizations) {
      for (const { containers } of workloads(rendered[dir]!.objects)) {
        for (const container of containers) {
          for (const variable of container.env ?? []) {
            const ref = variable.valueFrom?.secretKeyRef;
            if (!ref) continue;
            if (!required.has(ref.name)) required.set(ref.name, new Set());
            if (ref.optional !== true) required.get(ref.name)!.add(ref.key);
          }
          for (const source of container.envFrom ?? []) if (source.secretRef && !required.has(source.secretRef.name)) required.set(source.secretRef.name, new Set());
        }
      }
    }
    expect([...required.keys()].sort()).toEqual(['bank-bridge', 'bank-secrets', 'scheduler-secrets']);
    for (const [name, keys] of required) {
      const command = new RegExp(`kubectl -n commune create secret generic ${name}(?:\\\\\\n|[^\\n])*`).exec(readme)?.[0];
      expect(`${name}: ${command === undefined ? 'no kubectl create secret command' : 'documented'}`).toBe(`${name}: documented`);
      for (const key of keys) expect(`${name} ${key}: ${command!.includes(`--from-literal=${key}=`)}`).toBe(`${name} ${key}: true`);
    }
  });
});

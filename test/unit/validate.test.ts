import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_BUNDLE_BYTES, type DeploymentInput } from '../../core/deployment/schema.ts';
import { MAX_DOCUMENT_CHARS, parseDeployment, parseDeploymentDocument } from '../../core/deployment/validate.ts';
import { ValidationError } from '../../core/errors.ts';

/** A small but complete deployment; each test breaks one thing in a fresh copy. */
function validInput(): DeploymentInput {
  return {
    name: 'hello-world',
    externalNetwork: 'public',
    bastion: { server: 'jump', user: 'ubuntu', securityGroup: 'bastion-sg' },
    networks: [{ name: 'app-net', cidr: '10.0.0.0/24' }],
    securityGroups: [{ name: 'web', rules: [{ port: 8080 }] }],
    vms: [
      { name: 'web1', network: 'app-net', securityGroups: ['web'], image: 'debian-12', flavor: 'm1.small', floatingIp: true },
      { name: 'web2', network: 'app-net', image: 'debian-12', flavor: 'm1.small' },
    ],
    files: { 'app/hello.py': 'print("hello")\n', 'site.yml': '- hosts: all\n' },
    workflow: {
      steps: [
        { id: 'provision', action: 'provision' },
        { id: 'push', action: 'ssh', targets: ['web1', 'web2'], command: 'python3 app/hello.py', files: ['app/hello.py'], dependsOn: ['provision'] },
        { id: 'configure', action: 'ansible', targets: ['web1'], playbook: 'site.yml', dependsOn: ['provision'] },
        { id: 'smoke', action: 'run', command: 'curl -f http://web1:8080', dependsOn: ['push', 'configure'] },
      ],
    },
  };
}

type Mutable = Record<string, unknown> & { workflow: { steps: Record<string, unknown>[] } } & {
  vms: Record<string, unknown>[];
  files: Record<string, string>;
};

/** Applies `change` to a valid input and returns the ValidationError it causes. */
function errorFor(change: (d: Mutable) => void): ValidationError {
  const input = structuredClone(validInput()) as unknown as Mutable;
  change(input);
  try {
    parseDeployment(input);
  } catch (e) {
    if (e instanceof ValidationError) return e;
    throw e;
  }
  throw new Error('expected a ValidationError');
}

describe('Function: parseDeployment', () => {
  it('accepts a valid deployment and fills in defaults', () => {
    const spec = parseDeployment(validInput());

    expect(spec.bastion.port).toBeUndefined();
    expect(spec.vms[1]!.securityGroups).toEqual([]);
    expect(spec.vms[1]!.floatingIp).toBe(false);
    expect(spec.securityGroups[0]!.rules[0]).toEqual({ direction: 'ingress', protocol: 'tcp', port: 8080 });
    expect(spec.workflow.steps[0]!.dependsOn).toEqual([]);
    expect(spec.workflow.steps.map((s) => s.id)).toEqual(['provision', 'push', 'configure', 'smoke']);
  });

  it('names the unknown key and where it is', () => {
    const error = errorFor((d) => {
      d.vms[0]!.netwrok = 'app-net';
    });

    expect(error.message).toBe('vms[0]: unknown key "netwrok"');
  });

  it('names an unknown key inside a step', () => {
    const error = errorFor((d) => {
      d.workflow.steps[3]!.dependson = ['push'];
    });

    expect(error.message).toBe('workflow.steps[3]: unknown key "dependson"');
  });

  it('names a missing required field', () => {
    const error = errorFor((d) => {
      delete d.name;
    });

    expect(error.message).toBe('name: is required (expected string)');
  });

  it('names an unknown step action and lists the allowed ones', () => {
    const error = errorFor((d) => {
      d.workflow.steps[3]!.action = 'shell';
    });

    expect(error.message).toBe(
      'workflow.steps[3].action: unknown action "shell"; expected one of "run", "provision", "deprovision", "ssh", "ansible"',
    );
  });

  it('reports a field of the wrong type', () => {
    const error = errorFor((d) => {
      d.workflow.steps[3]!.command = 42;
    });

    expect(error.message).toBe('workflow.steps[3].command: expected string, received number');
  });

  it('refuses duplicate step ids', () => {
    const error = errorFor((d) => {
      d.workflow.steps[3]!.id = 'push';
    });

    expect(error.message).toBe('workflow.steps[3].id: duplicate step id "push"');
  });

  it('refuses a dependency on an unknown step', () => {
    const error = errorFor((d) => {
      d.workflow.steps[2]!.dependsOn = ['bulid'];
    });

    expect(error.message).toBe('workflow.steps[2].dependsOn[0]: unknown step "bulid"');
  });

  it('refuses a step that depends on itself', () => {
    const error = errorFor((d) => {
      d.workflow.steps[3]!.dependsOn = ['push', 'smoke'];
    });

    expect(error.message).toBe('workflow.steps[3].dependsOn[1]: step "smoke" depends on itself');
  });

  it('names a dependency cycle', () => {
    const error = errorFor((d) => {
      d.workflow.steps[0]!.dependsOn = ['smoke'];
    });

    expect(error.message).toBe('workflow.steps: dependency cycle provision → smoke → push → provision');
  });

  it.each(['bastion-open', 'bastion-close'])('refuses the system step id %s', (id) => {
    const error = errorFor((d) => {
      d.workflow.steps[3]!.id = id;
    });

    expect(error.message).toBe(`workflow.steps[3].id: step id "${id}" is reserved for a system step`);
  });

  it('refuses a target that is not a declared VM', () => {
    const error = errorFor((d) => {
      d.workflow.steps[1]!.targets = ['web1', 'web3'];
    });

    expect(error.message).toBe('workflow.steps[1].targets[1]: unknown VM "web3"');
  });

  it('refuses a provision target that is not a declared VM', () => {
    const error = errorFor((d) => {
      d.workflow.steps[0]!.targets = ['db'];
    });

    expect(error.message).toBe('workflow.steps[0].targets[0]: unknown VM "db"');
  });

  it('refuses a VM on an undeclared network', () => {
    const error = errorFor((d) => {
      d.vms[1]!.network = 'db-net';
    });

    expect(error.message).toBe('vms[1].network: unknown network "db-net"');
  });

  it('refuses a VM in an undeclared security group', () => {
    const error = errorFor((d) => {
      d.vms[0]!.securityGroups = ['web', 'db'];
    });

    expect(error.message).toBe('vms[0].securityGroups[1]: unknown security group "db"');
  });

  it('refuses duplicate VM, network and security group names', () => {
    const error = errorFor((d) => {
      d.vms.push({ name: 'web1', network: 'app-net', image: 'debian-12', flavor: 'm1.small' });
      (d.networks as unknown[]).push({ name: 'app-net' });
      (d.securityGroups as unknown[]).push({ name: 'web' });
    });

    expect(error.issues).toEqual([
      { path: 'networks[1].name', message: 'duplicate network name "app-net"' },
      { path: 'securityGroups[1].name', message: 'duplicate security group name "web"' },
      { path: 'vms[2].name', message: 'duplicate VM name "web1"' },
    ]);
    expect(error.message).toBe('networks[1].name: duplicate network name "app-net"');
  });

  it('refuses a bundle over the limit and says its size and the limit, counting UTF-8 bytes', () => {
    const error = errorFor((d) => {
      // "é" is two bytes in UTF-8: half the limit in characters is exactly the limit in bytes, plus the other files.
      d.files['big.txt'] = 'é'.repeat(MAX_BUNDLE_BYTES / 2);
    });
    const size = MAX_BUNDLE_BYTES + Buffer.byteLength('print("hello")\n- hosts: all\n');

    expect(error.message).toBe(`files: bundle is ${size} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
  });

  it('accepts a bundle of exactly the limit', () => {
    const input = validInput();
    input.files = { 'a.bin': 'x'.repeat(MAX_BUNDLE_BYTES) };
    input.workflow.steps = [{ id: 'only', action: 'run', command: 'true' }];

    expect(() => parseDeployment(input)).not.toThrow();
  });

  it.each([
    ['../etc/passwd', 'files["../etc/passwd"]: path must not contain ".." segments'],
    ['app/../../x', 'files["app/../../x"]: path must not contain ".." segments'],
    ['/etc/passwd', 'files["/etc/passwd"]: path must be relative, not absolute'],
    ['C:/Windows', 'files["C:/Windows"]: path must be relative, not absolute'],
    ['app\\hello.py', 'files["app\\\\hello.py"]: path contains a backslash; use "/"'],
    ['app//hello.py', 'files["app//hello.py"]: path must not contain empty segments ("//" or a trailing "/")'],
    ['app/', 'files["app/"]: path must not contain empty segments ("//" or a trailing "/")'],
    ['', 'files[""]: path is empty'],
    ['./app.py', 'files["./app.py"]: path must not contain "." segments'],
    ['a\0b', 'files["a\\u0000b"]: path contains a NUL character'],
    ['x'.repeat(256), `files["${'x'.repeat(256)}"]: path is 256 characters, over the 255 limit`],
  ])('refuses the unsafe bundle path %j', (path, message) => {
    const error = errorFor((d) => {
      d.files[path] = 'x';
    });

    expect(error.message).toBe(message);
  });

  it('accepts a path of 255 characters', () => {
    const input = validInput();
    input.files = { ...input.files, ['x'.repeat(255)]: '' };

    expect(() => parseDeployment(input)).not.toThrow();
  });

  it('accepts a binary bundle file as base64 and counts its decoded bytes against the limit', () => {
    const bytes = Buffer.from([0xff, 0x00, 0xc3, 0x28]);
    const input = { ...validInput(), files: { ...validInput().files, 'app.tar.gz': { content: bytes.toString('base64'), encoding: 'base64' as const } } };
    expect(parseDeployment(input).files['app.tar.gz']).toEqual({ content: '/wDDKA==', encoding: 'base64' });
    const big = Buffer.alloc(MAX_BUNDLE_BYTES + 1).toString('base64');
    const error = errorFor((d) => {
      (d.files as Record<string, unknown>) = { 'big.bin': { content: big, encoding: 'base64' } };
      d.workflow.steps = [{ id: 'smoke', action: 'run', command: 'true' }];
    });
    expect(error.message).toBe(`files: bundle is ${MAX_BUNDLE_BYTES + 1} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
  });

  it('names a bad binary bundle file: not base64, or an unknown encoding', () => {
    const notBase64 = errorFor((d) => {
      (d.files as Record<string, unknown>)['x.bin'] = { content: 'not base64!', encoding: 'base64' };
    });
    expect(notBase64.message).toContain('files["x.bin"].content: must be standard base64');
    const hex = errorFor((d) => {
      (d.files as Record<string, unknown>)['x.bin'] = { content: 'AAAA', encoding: 'hex' };
    });
    expect(hex.message).toBe('files["x.bin"]: encoding: expected "base64"');
  });

  it('quotes a bundle path in a type error', () => {
    const error = errorFor((d) => {
      (d.files as Record<string, unknown>)['run'] = 7;
    });

    expect(error.message).toBe('files["run"]: expected a string or { content, encoding: "base64" }, received number');
  });

  it('refuses an ansible playbook missing from the bundle', () => {
    const error = errorFor((d) => {
      d.workflow.steps[2]!.playbook = 'playbooks/site.yml';
    });

    expect(error.message).toBe('workflow.steps[2].playbook: playbook "playbooks/site.yml" is not in files');
  });

  it('refuses ssh files missing from the bundle', () => {
    const error = errorFor((d) => {
      d.workflow.steps[1]!.files = ['app/hello.py', 'app/helo.py'];
    });

    expect(error.message).toBe('workflow.steps[1].files[1]: "app/helo.py" is not in files');
  });

  it('lists every issue, the first one in the message', () => {
    const error = errorFor((d) => {
      d.workflow.steps[1]!.dependsOn = ['provison'];
      d.workflow.steps[2]!.targets = ['web9'];
    });

    expect(error.issues).toEqual([
      { path: 'workflow.steps[1].dependsOn[0]', message: 'unknown step "provison"' },
      { path: 'workflow.steps[2].targets[0]', message: 'unknown VM "web9"' },
    ]);
    expect(error.message).toBe('workflow.steps[1].dependsOn[0]: unknown step "provison"');
  });

  it('throws only ValidationError on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(() => parseDeployment(value)).toThrow(ValidationError);
      }),
      { numRuns: 300 },
    );
  });

  it('throws only ValidationError when arbitrary JSON replaces any part of a valid deployment', () => {
    const paths = [
      ['name'], ['bastion'], ['bastion', 'port'], ['networks'], ['networks', 0], ['securityGroups', 0, 'rules'],
      ['vms'], ['vms', 0], ['vms', 1, 'securityGroups'], ['files'], ['files', 'app/hello.py'],
      ['workflow'], ['workflow', 'steps'], ['workflow', 'steps', 1], ['workflow', 'steps', 1, 'dependsOn'],
      ['workflow', 'steps', 2, 'targets'], ['workflow', 'steps', 3, 'id'],
    ];
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.jsonValue(), (path, value) => {
        const input = structuredClone(validInput()) as unknown as Record<PropertyKey, unknown>;
        let node = input;
        for (const key of path.slice(0, -1)) node = node[key] as Record<PropertyKey, unknown>;
        node[path[path.length - 1]!] = value;
        try {
          parseDeployment(input);
        } catch (e) {
          expect(e).toBeInstanceOf(ValidationError);
          expect((e as ValidationError).issues.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('throws only ValidationError on random workflows of known and unknown step ids', () => {
    const ids = ['a', 'b', 'c', 'd', 'bastion-open', 'zz'];
    const stepArb = fc.record({
      id: fc.constantFrom(...ids),
      action: fc.constant('run'),
      command: fc.constant('true'),
      dependsOn: fc.array(fc.constantFrom(...ids), { maxLength: 4 }),
    });
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 8 }), (steps) => {
        const input = { ...validInput(), workflow: { steps } };
        try {
          const spec = parseDeployment(input);
          expect(spec.workflow.steps).toHaveLength(steps.length);
        } catch (e) {
          expect(e).toBeInstanceOf(ValidationError);
        }
      }),
    );
  });
});

describe('Function: parseDeployment (OpenStack topology)', () => {
  it('defaults the bastion server to "bastion"', () => {
    const input = validInput();
    delete (input.bastion as { server?: string }).server;
    expect(parseDeployment(input).bastion.server).toBe('bastion');
  });

  it('refuses bastion.address: the address comes from the cloud', () => {
    expect(errorFor((d) => ((d.bastion as Record<string, unknown>).address = '127.0.0.2')).message).toBe('bastion: unknown key "address"');
  });

  it.each(['image', 'flavor'])('requires vms[].%s', (field) => {
    expect(errorFor((d) => delete d.vms[0]![field]).message).toBe(`vms[0].${field}: is required (expected string)`);
  });

  it('refuses an empty image name', () => {
    expect(errorFor((d) => (d.vms[1]!.image = '')).message).toBe('vms[1].image: image must not be empty');
  });

  it('refuses a floating IP without externalNetwork', () => {
    expect(errorFor((d) => delete d.externalNetwork).message).toBe(
      'vms[0].floatingIp: a floating IP needs externalNetwork (the network it is allocated from)',
    );
  });

  it('refuses a router without externalNetwork', () => {
    const error = errorFor((d) => {
      delete d.externalNetwork;
      d.vms[0]!.floatingIp = false;
      (d.networks as Record<string, unknown>[])[0]!.router = true;
    });
    expect(error.message).toBe('networks[0].router: a router needs externalNetwork (the network its gateway is on)');
  });

  it('refuses a floating IP on a network without a router', () => {
    const error = errorFor((d) => ((d.networks as Record<string, unknown>[])[0]!.router = false));
    expect(error.message).toBe('vms[0].floatingIp: a floating IP needs a router on network "app-net", which sets router: false');
  });

  it('accepts router: false without externalNetwork', () => {
    const input = structuredClone(validInput()) as unknown as Mutable;
    delete input.externalNetwork;
    input.vms[0]!.floatingIp = false;
    (input.networks as Record<string, unknown>[])[0]!.router = false;
    expect(parseDeployment(input).networks[0]!.router).toBe(false);
  });

  it.each([
    ['10.0.0.1/24', 'networks[0].cidr: 10.0.0.1/24 is not a network address (host bits are set; did you mean 10.0.0.0/24?)'],
    ['10.0.300.0/24', 'networks[0].cidr: 10.0.300.0/24 is not an IPv4 address (an octet is over 255)'],
    ['10.0.0.0/33', 'networks[0].cidr: 10.0.0.0/33 has a prefix length over 32'],
    ['10.0.0.0', 'networks[0].cidr: cidr must look like 10.0.0.0/24'],
  ])('refuses the subnet CIDR %s', (cidr, message) => {
    expect(errorFor((d) => ((d.networks as Record<string, unknown>[])[0]!.cidr = cidr)).message).toBe(message);
  });

  it.each(['10.1.0.0/16', '192.168.7.128/25', '0.0.0.0/0', '172.16.5.4/32'])('accepts the network address %s', (cidr) => {
    const input = validInput();
    input.networks![0]!.cidr = cidr;
    expect(parseDeployment(input).networks[0]!.cidr).toBe(cidr);
  });

  it("refuses user data over Nova's 65,535 base64 characters, naming the VM", () => {
    // 49,000 bytes of command are 65,334 characters in base64; the key line and the rest tip it over.
    const error = errorFor((d) => (d.vms[1]!.userData = { runcmd: ['x'.repeat(49_000)] }));
    expect(error.message).toMatch(/^vms\[1\]\.userData: the user data of VM "web2" is \d+ characters in base64, over Nova's limit of 65535$/);
  });

  it('accepts user data just under the limit once the public key is counted', () => {
    // The rendered document (key line included) must encode to at most 65,535 characters.
    const input = validInput();
    input.vms![1]!.userData = { runcmd: ['x'.repeat(48_900)] };
    expect(() => parseDeployment(input)).not.toThrow();
  });
});

describe('Function: parseDeploymentDocument', () => {
  it('parses YAML', () => {
    const yaml = [
      'name: demo',
      'bastion: { server: bastion, user: ctd, securityGroup: bastion }',
      'workflow:',
      '  steps:',
      '    - id: hello',
      '      action: run',
      '      command: echo hello',
    ].join('\n');

    const spec = parseDeploymentDocument(yaml, 'demo.yaml');

    expect(spec.name).toBe('demo');
    expect(spec.workflow.steps[0]).toMatchObject({ id: 'hello', command: 'echo hello', dependsOn: [] });
  });

  it('parses JSON', () => {
    const spec = parseDeploymentDocument(JSON.stringify(validInput()), 'deployment.json');

    expect(spec).toEqual(parseDeployment(validInput()));
  });

  it('reports a YAML syntax error with file, line and column', () => {
    expect(() => parseDeploymentDocument('name: demo\nvms: [a, b\nfiles: {}\n', 'demo.yaml')).toThrow(
      /^demo\.yaml:3:1: /,
    );
  });

  it('refuses duplicate keys instead of keeping the last one', () => {
    expect(() => parseDeploymentDocument('name: a\nname: b\n', 'demo.yaml')).toThrow(
      'demo.yaml:2:1: Map keys must be unique',
    );
  });

  it('refuses more than one YAML document', () => {
    expect(() => parseDeploymentDocument('name: a\n---\nname: b\n', 'demo.yaml')).toThrow(
      'demo.yaml:2:1: a deployment file holds exactly one YAML document',
    );
  });

  it('refuses alias bombs', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => {
      const prev = String.fromCharCode(97 + i);
      const name = String.fromCharCode(98 + i);
      return `${name}: &${name} [*${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}]`;
    })].join('\n');

    expect(() => parseDeploymentDocument(bomb, 'bomb.yaml')).toThrow(ValidationError);
  });

  it('refuses a document too large to hold a valid bundle before parsing it', () => {
    const text = `name: x\n#${'x'.repeat(MAX_DOCUMENT_CHARS)}`;

    expect(() => parseDeploymentDocument(text, 'huge.yaml')).toThrow(
      `huge.yaml: document is ${text.length} characters, over the ${MAX_DOCUMENT_CHARS} limit`,
    );
  });

  it('applies the deployment rules after parsing', () => {
    const yaml = JSON.stringify({ ...validInput(), vms: [{ name: 'web1', network: 'app-net', image: 'i', flavor: 'f', netwrok: 'x' }] });

    expect(() => parseDeploymentDocument(yaml)).toThrow('vms[0]: unknown key "netwrok"');
  });

  it('throws only ValidationError on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        expect(() => parseDeploymentDocument(text)).toThrow(ValidationError);
      }),
      { numRuns: 300 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import { cloudConfigFromEnv } from '../../adapters/cloudConfig.ts';
import { cloudDriverFor } from '../../adapters/cloudDrivers.ts';
import { OpenStackDriver } from '../../adapters/openstack/driver.ts';
import { parseConfig } from '../../core/config/schema.ts';

describe('Function: cloudConfigFromEnv', () => {
  it('reads the OpenStack settings, the egress addresses as a comma list', () => {
    expect(
      cloudConfigFromEnv({
        CTD_CLOUD: 'openstack',
        CTD_KEYSTONE_URL: 'https://iam.eu-de.otc.t-systems.com/v3',
        CTD_EGRESS_ADDRESSES: ' 198.51.100.7, 203.0.113.0/28 ,',
        CTD_OS_INTERFACE: 'internal',
        CTD_OS_REGION: 'eu-de',
      }),
    ).toEqual({
      kind: 'openstack',
      keystoneUrl: 'https://iam.eu-de.otc.t-systems.com/v3',
      egressAddresses: ['198.51.100.7', '203.0.113.0/28'],
      interface: 'internal',
      region: 'eu-de',
    });
  });

  it('defaults to openstack with no egress address, interface or region', () => {
    expect(cloudConfigFromEnv({})).toEqual({ kind: 'openstack', keystoneUrl: '', egressAddresses: [] });
  });
});

describe('Function: cloudDriverFor', () => {
  const config = { kind: 'openstack', keystoneUrl: 'http://127.0.0.1:5000/v3', egressAddresses: ['127.0.0.1'] };

  it('gives the OpenStack driver', () => {
    expect(cloudDriverFor(config)).toBeInstanceOf(OpenStackDriver);
  });

  it('says plainly that a process without the cloud section has no cloud', () => {
    expect(() => cloudDriverFor(cloudConfigFromEnv({}))).toThrow('this process has no cloud configuration (CTD_KEYSTONE_URL)');
  });
});

describe('Schema: the cloud section (validated once, at start-up)', () => {
  const good = { CTD_CLOUD: 'openstack', CTD_KEYSTONE_URL: 'https://iam.example.com/v3', CTD_EGRESS_ADDRESSES: '198.51.100.7, 203.0.113.0/28,2001:db8::1,2001:db8::/64' };

  it('accepts IPv4 and IPv6 addresses and CIDRs in a comma list', () => {
    expect(parseConfig('the sandbox', ['cloud'], good)).toMatchObject(good);
  });

  it.each([
    [{ CTD_CLOUD: 'local' }, 'CTD_CLOUD: unknown cloud kind (known: openstack)'],
    [{ CTD_KEYSTONE_URL: undefined }, 'CTD_KEYSTONE_URL: required'],
    [{ CTD_KEYSTONE_URL: 'iam.example.com' }, 'CTD_KEYSTONE_URL: must be a URL'],
    [{ CTD_EGRESS_ADDRESSES: '198.51.100.7,nat.example.com' }, 'CTD_EGRESS_ADDRESSES: "nat.example.com" is not an IP address or CIDR'],
    [{ CTD_EGRESS_ADDRESSES: '198.51.100.300' }, 'CTD_EGRESS_ADDRESSES: "198.51.100.300" is not an IP address or CIDR'],
  ])('refuses %j, naming the variable', (bad, message) => {
    expect(() => parseConfig('the sandbox', ['cloud'], { ...good, ...bad })).toThrow(`configuration of the sandbox is invalid: ${message}`);
  });
});

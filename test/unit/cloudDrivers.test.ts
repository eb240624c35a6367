import { describe, expect, it } from 'vitest';
import { cloudConfigFromEnv, cloudDriverFor } from '../../adapters/cloudDrivers.ts';
import { OpenStackDriver } from '../../adapters/openstack/driver.ts';

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

  it.each([
    [{ ...config, kind: 'local' }, 'CTD_CLOUD "local" is not a cloud kind this engine knows (known: openstack)'],
    [{ ...config, keystoneUrl: '' }, 'the openstack cloud needs CTD_KEYSTONE_URL'],
    [{ ...config, keystoneUrl: 'iam.example.com' }, 'CTD_KEYSTONE_URL "iam.example.com" is not a URL'],
    [{ ...config, egressAddresses: ['nat.example.com'] }, 'CTD_EGRESS_ADDRESSES: "nat.example.com" is not an IP address or CIDR'],
  ])('refuses %j clearly', (bad, message) => {
    expect(() => cloudDriverFor(bad)).toThrow(message);
  });
});

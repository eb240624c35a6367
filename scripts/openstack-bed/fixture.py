#!/usr/bin/python3
"""The test bed's fixture, created idempotently with openstacksdk in one process.

  fixture.py identity   service catalog, projects "service" and "demo", user "demo" (member)
  fixture.py resources  flavors, image, external network "public", demo quotas, and the demo
                        tenant's pre-existing bastion (security group, network, router, port,
                        server, floating IP)

Reads OS_CLIENT_CONFIG_FILE (clouds "osbed-admin" and "osbed-demo") and OSBED_IMAGE_FILE.
Every address here is a documentation range stored as a Neutron record: no packet uses it.
"""
import os
import sys
import time

import openstack

ENDPOINTS = {
    'compute': ('nova', 'http://127.0.0.1:8774/v2.1'),
    'network': ('neutron', 'http://127.0.0.1:9696'),
    'image': ('glance', 'http://127.0.0.1:9292'),
    'placement': ('placement', 'http://127.0.0.1:8778'),
}
# A trait no resource provider has: a flavor that requires it can never be scheduled, so a
# server with it goes to ERROR with Nova's "No valid host was found" fault.
NEVER_TRAIT = 'CUSTOM_CTD_NEVER_SCHEDULED'


def log(msg):
    print(f'[fixture] {msg}', flush=True)


def identity(admin):
    services = {s.type: s for s in admin.identity.services()}
    for typ, (name, url) in ENDPOINTS.items():
        svc = services.get(typ) or admin.identity.create_service(name=name, type=typ)
        have = {e.interface for e in admin.identity.endpoints(service_id=svc.id)}
        for itf in ('public', 'internal'):
            if itf not in have:
                admin.identity.create_endpoint(service_id=svc.id, interface=itf, url=url,
                                               region_id='RegionOne')
    projects = {}
    for name in ('service', 'demo'):
        projects[name] = (admin.identity.find_project(name, domain_id='default')
                          or admin.identity.create_project(name=name, domain_id='default'))
    password = os.environ['OSBED_PASSWORD']
    demo = admin.identity.find_user('demo', domain_id='default')
    if demo is None:
        demo = admin.identity.create_user(name='demo', password=password, domain_id='default',
                                          default_project_id=projects['demo'].id)
    member = admin.identity.find_role('member')
    admin.identity.assign_project_role_to_user(projects['demo'], demo, member)
    log('catalog, projects service/demo, user demo (member of demo)')


def wait_for(what, check, timeout=180, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f'[fixture] timed out after {timeout}s waiting for {what}')
        time.sleep(interval)


def flavors(admin):
    if not admin.compute.find_flavor('m1.small'):
        admin.compute.create_flavor(name='m1.small', ram=512, vcpus=1, disk=1, is_public=True)
    # The trait must exist in placement, or the scheduler's request is a 400 instead of "no host".
    admin.placement.put(f'/traits/{NEVER_TRAIT}', microversion='1.6').raise_for_status()
    never = admin.compute.find_flavor('m1.unschedulable')
    if not never:
        never = admin.compute.create_flavor(name='m1.unschedulable', ram=512, vcpus=1, disk=1,
                                            is_public=True)
        admin.compute.create_flavor_extra_specs(never, {f'trait:{NEVER_TRAIT}': 'required'})
    log('flavors m1.small and m1.unschedulable (requires a trait no host has)')


def image(admin):
    img = admin.image.find_image('debian-12')
    if img and img.status != 'active':
        admin.image.delete_image(img)
        img = None
    if not img:
        admin.create_image('debian-12', filename=os.environ['OSBED_IMAGE_FILE'], disk_format='raw',
                           container_format='bare', visibility='public', wait=True)
    log('image debian-12')


def public_network(admin):
    net = admin.network.find_network('public')
    if not net:
        net = admin.network.create_network(name='public', is_router_external=True,
                                           provider_network_type='flat',
                                           provider_physical_network='public')
    if not admin.network.find_subnet('public-subnet'):
        admin.network.create_subnet(name='public-subnet', network_id=net.id, ip_version=4,
                                    cidr='203.0.113.0/24', gateway_ip='203.0.113.1',
                                    allocation_pools=[{'start': '203.0.113.10',
                                                       'end': '203.0.113.250'}],
                                    enable_dhcp=False)
    log('external network public (203.0.113.0/24, records only)')
    return net


def quotas(admin):
    demo = admin.identity.find_project('demo', domain_id='default')
    # Defaults (10 security groups, 10 instances, ...) are too few for parallel test runs.
    admin.network.put(f'/quotas/{demo.id}', json={'quota': {
        'network': 100, 'subnet': 100, 'port': 500, 'router': 50, 'floatingip': 100,
        'security_group': 100, 'security_group_rule': 1000}}).raise_for_status()
    admin.compute.put(f'/os-quota-sets/{demo.id}', json={'quota_set': {
        'instances': 100, 'cores': 200, 'ram': 102400}}).raise_for_status()
    log('demo quotas raised')


def bastion(demo, public):
    """The tenant's own jump host, made by the tenant before any deployment."""
    net = demo.network.find_network('bastion-net') or demo.network.create_network(name='bastion-net')
    sub = demo.network.find_subnet('bastion-subnet') or demo.network.create_subnet(
        name='bastion-subnet', network_id=net.id, ip_version=4, cidr='198.51.100.0/24')
    router = demo.network.find_router('bastion-router')
    if not router:
        router = demo.network.create_router(name='bastion-router',
                                            external_gateway_info={'network_id': public.id})
    if not list(demo.network.ports(device_id=router.id, network_id=net.id)):
        demo.network.add_interface_to_router(router, subnet_id=sub.id)
    sg = demo.network.find_security_group('bastion') or demo.network.create_security_group(
        name='bastion', description='the tenant jump host')
    port = demo.network.find_port('bastion-port') or demo.network.create_port(
        name='bastion-port', network_id=net.id, security_group_ids=[sg.id])

    server = demo.compute.find_server('bastion')
    if server and demo.compute.get_server(server.id).status == 'ERROR':
        demo.compute.delete_server(server)
        demo.compute.wait_for_delete(server, interval=0.5, wait=120)
        server = None
    if not server:
        img = demo.image.find_image('debian-12')
        flavor = demo.compute.find_flavor('m1.small')
        server = demo.compute.create_server(name='bastion', image_id=img.id, flavor_id=flavor.id,
                                            networks=[{'port': port.id}],
                                            metadata={'ssh_port': '22'})
    server = demo.compute.wait_for_server(server, status='ACTIVE', interval=0.5, wait=180)
    if not list(demo.network.ips(port_id=port.id)):
        demo.network.create_ip(floating_network_id=public.id, port_id=port.id,
                               description='bastion')
    fip = next(iter(demo.network.ips(port_id=port.id)))
    log(f'bastion: server {server.id} ACTIVE, security group bastion, '
        f'floating IP {fip.floating_ip_address}')


def compute_ready(admin):
    """nova-compute has reported inventory to placement (else scheduling fails: no host)."""
    def check():
        rps = admin.placement.get('/resource_providers', microversion='1.14').json()
        for rp in rps.get('resource_providers', []):
            inv = admin.placement.get(f"/resource_providers/{rp['uuid']}/inventories").json()
            if 'VCPU' in inv.get('inventories', {}):
                return True
        return False
    wait_for('compute inventory in placement', check)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ''
    admin = openstack.connect(cloud='osbed-admin')
    if what == 'identity':
        identity(admin)
    elif what == 'resources':
        compute_ready(admin)
        flavors(admin)
        image(admin)
        public = public_network(admin)
        quotas(admin)
        bastion(openstack.connect(cloud='osbed-demo'), public)
    else:
        sys.exit('usage: fixture.py identity|resources')


if __name__ == '__main__':
    main()

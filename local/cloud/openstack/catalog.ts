/** The fixed Glance images and Nova flavors of the local cloud (every project sees them). */

export const DEBIAN_12_IMAGE_ID = '3d5f0f8e-5b0e-4b55-9a63-7c1e2d0a1201';
export const SMALL_FLAVOR_ID = '2';

export interface ImageRecord {
  id: string;
  name: string;
  os_distro: string;
}

export const IMAGES: ImageRecord[] = [
  { id: DEBIAN_12_IMAGE_ID, name: 'debian-12', os_distro: 'debian' },
  { id: '3d5f0f8e-5b0e-4b55-9a63-7c1e2d0a1202', name: 'ubuntu-22.04', os_distro: 'ubuntu' },
];

export interface FlavorRecord {
  id: string;
  name: string;
  ram: number;
  vcpus: number;
  disk: number;
}

export const FLAVORS: FlavorRecord[] = [
  { id: '1', name: 'm1.tiny', ram: 512, vcpus: 1, disk: 1 },
  { id: SMALL_FLAVOR_ID, name: 'm1.small', ram: 2048, vcpus: 1, disk: 20 },
  { id: '3', name: 'm1.medium', ram: 4096, vcpus: 2, disk: 40 },
];

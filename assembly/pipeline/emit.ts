// Output: every frame that leaves is an out-desc plus its header slot
// (assembly/abi.ts). These helpers write both and count the transmit side.
import { HDR_SLOT, OUT_DESC, O_PORT, O_HDRLEN, O_DATA, O_DATALEN, O_IN, O_VN } from "../abi";
import { hdrBase, outDescBase, portCtr, vnCtr, ctrInc, ctrInc2, PORT_CTR, VN_CTR,
         PC_TX_FRAMES, PC_TX_BYTES, VC_TX } from "../state";
import { raw16 } from "../util";
import { ETHERTYPE_VLAN } from "../proto/ethernet";

export let outCount: u32 = 0;
export let curIn: u32 = 0;

export function resetOut(): void { outCount = 0; }
export function setCurIn(i: u32): void { curIn = i; }
/** The output cursor after a loop that kept it in a local (floodfast.ts). */
@inline export function setOutCount(n: u32): void { outCount = n; }

/** The header slot the next output will use. */
@inline export function nextHdr(): usize {
  return hdrBase + <usize>outCount * HDR_SLOT;
}

/** Commits the next output: `hdrLen` bytes already written at nextHdr(), then data. */
@inline export function commit(port: u32, hdrLen: u32, data: usize, dataLen: u32, vn: u32): void {
  const d = outDescBase + <usize>outCount * OUT_DESC;
  // the out-desc's six fields (abi.ts) as two 8-byte stores: port, hdrLen,
  // data | dataLen, input index, VN (issue 18: four stores fewer per output)
  store<u64>(d, <u64>(port & 0xffff) | (<u64>(hdrLen & 0xffff) << 16) | (<u64><u32>data << 32));
  store<u64>(d, <u64>(dataLen & 0xffff) | (<u64>(curIn & 0xffff) << 16) | (<u64>vn << 32), 8);
  outCount++;
  ctrInc2(portCtr + (<usize>port * PORT_CTR << 3), PC_TX_FRAMES, 1, <u64>(hdrLen + dataLen)); // and PC_TX_BYTES
  ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_TX, 1);
  // GC_OUTPUTS: added once per batch from outCount (index.ts process)
}

/**
 * Commits a frame the NVE itself sends (pipeline/host.ts: ARP and ND answers
 * for underlay.ip): `hdrLen` bytes at nextHdr(), no data piece, counted on the
 * port and on no VN.
 */
export function commitHost(port: u32, hdrLen: u32): void {
  const h = nextHdr();
  const d = outDescBase + <usize>outCount * OUT_DESC;
  store<u16>(d, <u16>port, O_PORT);
  store<u16>(d, <u16>hdrLen, O_HDRLEN);
  store<u32>(d, <u32>h, O_DATA);
  store<u16>(d, 0, O_DATALEN);
  store<u16>(d, <u16>curIn, O_IN);
  store<u32>(d, 0xffffffff, O_VN);
  outCount++;
  const pc = portCtr + (<usize>port * PORT_CTR << 3);
  ctrInc(pc, PC_TX_FRAMES, 1);
  ctrInc(pc, PC_TX_BYTES, <u64>hdrLen);
}

/**
 * A frame to a local VNIC's port with that port's tag: the 12 MAC bytes from
 * `macs`, then 0x8100 and the TCI (PCP/DEI kept from `pcpDei`, VID = tag),
 * then `data` (the frame from its EtherType on).
 */
@inline export function emitTagged(port: u32, tag: u32, pcpDei: u32, macs: usize, data: usize, dataLen: u32, vn: u32): void {
  const h = nextHdr();
  const tci = ((pcpDei & 0xf000) | tag) & 0xffff;
  store<u64>(h, load<u64>(macs));
  // the source MAC's last 4 bytes, 0x8100 and the TCI as one 8-byte store (issue 18)
  store<u64>(h, <u64>load<u32>(macs, 8) | (<u64>(raw16(ETHERTYPE_VLAN) | (((tci << 8) | (tci >> 8)) & 0xffff) << 16) << 32), 8);
  commit(port, 16, data, dataLen, vn);
}

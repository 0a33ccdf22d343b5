//! A GPFIFO channel: RAMFC in its instance block, USERD in VRAM reached through BAR1, the
//! GPFIFO ring and the pushbuffer in host memory (DMA), the channel table and the runlist.

use super::hw::{fail, Hw, Result};
use super::vm::{write_words, Access, Pool};
use crate::transport::{Bar, DmaBuf};
use gpuvm_uapi::gf100::{gpfifo, pfifo, pushbuf, ramfc, target, userd};

/// GPFIFO ring of 2^9 entries (one 4 KiB page).
pub const GP_ORDER: u32 = 9;
pub const GP_ENTRIES: u32 = 1 << GP_ORDER;
/// Pushbuffer ring size (host memory).
pub const PB_BYTES: usize = 256 << 10;
/// Largest packet the driver emits in one header (Mesa caps packets at 2047 words).
pub const MAX_PACKET: usize = 2047;

pub struct Channel {
    pub chid: u32,
    pub inst: u64,
    /// BAR1 offset of this channel's USERD page (poll area + chid * stride).
    pub userd_bar1: u64,
    /// GPFIFO ring (sysmem) and its channel VA.
    pub gp: DmaBuf,
    pub gp_va: u64,
    /// Pushbuffer ring (sysmem) and its channel VA.
    pub pb: DmaBuf,
    pub pb_va: u64,
    /// Next free pushbuffer byte, and the start of the segment being built.
    pb_put: usize,
    seg_start: usize,
    gp_put: u32,
    /// Pushbuffer byte range [start, end) of each GPFIFO entry (index = GP entry).
    gp_seg: Vec<(usize, usize)>,
    /// Last GP_GET read from USERD.
    gp_get: u32,
    /// Words written into the pushbuffer (for the record).
    pub words_pushed: u64,
    pub doorbells: u64,
}

impl Channel {
    pub fn new(chid: u32, inst: u64, userd_bar1: u64, gp: DmaBuf, gp_va: u64, pb: DmaBuf, pb_va: u64) -> Self {
        Channel {
            chid,
            inst,
            userd_bar1,
            gp,
            gp_va,
            pb,
            pb_va,
            pb_put: 0,
            seg_start: 0,
            gp_put: 0,
            gp_seg: vec![(0, 0); GP_ENTRIES as usize],
            gp_get: 0,
            words_pushed: 0,
            doorbells: 0,
        }
    }

    /// Fill RAMFC as nouveau does for a GF100 GPFIFO channel (§8.6). The instance block must
    /// be zeroed beforehand. `phys_copy` also opens the physical-copy gate (`ramfc::HCE_CTRL`),
    /// as a host driver does for its own channels.
    pub fn write_ramfc(&self, hw: &mut Hw, pool: &Pool, userd_phys: u64, phys_copy: bool) {
        let w = |hw: &mut Hw, off: u32, v: u32| write_words(hw, pool, Access::Bar3, self.inst + off as u64, &[v]);
        w(hw, ramfc::USERD_LO, (userd_phys as u32 & ramfc::USERD_ADDR_MASK) | target::VRAM);
        w(hw, ramfc::USERD_HI, (userd_phys >> 32) as u32);
        w(hw, ramfc::SIGNATURE, ramfc::SIGNATURE_VALUE);
        w(hw, ramfc::ACQUIRE, ramfc::ACQUIRE_VALUE);
        w(hw, ramfc::GP_BASE, self.gp_va as u32);
        w(hw, ramfc::GP_BASE_HI, ramfc::gp_base_hi_value(self.gp_va, GP_ORDER));
        w(hw, ramfc::UNK54, ramfc::UNK54_VALUE);
        w(hw, ramfc::PB_HEADER, ramfc::PB_HEADER_VALUE);
        w(hw, ramfc::SUBDEVICE, ramfc::SUBDEVICE_VALUE);
        w(hw, ramfc::FORMATS, ramfc::FORMATS_VALUE);
        w(hw, ramfc::SUBCH_ENGINE_MAP0, ramfc::SUBCH_ENGINE_MAP_VALUE);
        w(hw, ramfc::SUBCH_ENGINE_MAP1, ramfc::SUBCH_ENGINE_MAP_VALUE);
        w(hw, ramfc::CURRENT_ENGINE, ramfc::CURRENT_ENGINE_VALUE);
        w(hw, ramfc::UNKB8, ramfc::UNKB8_VALUE);
        w(hw, ramfc::UNKF8, ramfc::UNKF8_VALUE);
        w(hw, ramfc::UNKFC, ramfc::UNKFC_VALUE);
        if phys_copy {
            w(hw, ramfc::HCE_CTRL, ramfc::HCE_CTRL_PRIV_MODE);
        }
    }

    /// Zero the USERD words PFIFO and the driver use (pscnv's set) through BAR1.
    pub fn clear_userd(&self, hw: &mut Hw) {
        for off in [userd::PUT, userd::GET, userd::REF, userd::PUT_HI, userd::REF_THRESHOLD, userd::TOP_LEVEL_GET, userd::TOP_LEVEL_GET_HI, userd::GET_HI, userd::GP_GET, userd::GP_PUT] {
            hw.bar_wr(Bar::Bar1, self.userd_bar1 + off as u64, 0);
        }
    }

    fn pb_word(&mut self, w: u32) {
        let off = self.pb_put;
        self.pb.write32_volatile(off, w);
        self.pb_put += 4;
        self.words_pushed += 1;
    }

    /// Make room for `words` more words in the current segment: if the ring would wrap, the
    /// current segment is submitted first and building restarts at offset 0 once the GPU has
    /// consumed what lies there.
    pub fn reserve(&mut self, hw: &mut Hw, words: usize) -> Result<()> {
        let need = words * 4;
        assert!(need <= PB_BYTES / 2, "packet too large for the pushbuffer");
        if self.pb_put - self.seg_start + need > PB_BYTES / 4 {
            // Keep segments short so the ring turns over.
            self.kick(hw)?;
        }
        if self.pb_put + need > PB_BYTES {
            self.kick(hw)?;
            self.pb_put = 0;
            self.seg_start = 0;
        }
        // Wait until no in-flight segment overlaps [pb_put, pb_put + need).
        let (lo, hi) = (self.pb_put, self.pb_put + need);
        self.wait_gp(hw, |ch| {
            let mut i = ch.gp_get;
            while i != ch.gp_put {
                let (start, end) = ch.gp_seg[i as usize];
                if start < hi && lo < end {
                    return false;
                }
                i = (i + 1) % GP_ENTRIES;
            }
            true
        })
    }

    /// Poll USERD GP_GET (through BAR1) until `ok` holds.
    fn wait_gp(&mut self, hw: &mut Hw, ok: impl Fn(&Channel) -> bool) -> Result<()> {
        let start = std::time::Instant::now();
        while !ok(self) {
            self.gp_get = hw.bar_rd(Bar::Bar1, self.userd_bar1 + userd::GP_GET as u64) % GP_ENTRIES;
            if ok(self) {
                break;
            }
            if start.elapsed() > super::hw::POLL_TIMEOUT * 5 {
                return fail(format!("channel {} stalled: GP_GET {} GP_PUT {}", self.chid, self.gp_get, self.gp_put));
            }
            hw.transport().pump();
            std::thread::yield_now();
        }
        Ok(())
    }

    /// Append a method packet: `data` words go to `method`, `method + 4`, ... (or all to
    /// `method` when `nonincr`).
    pub fn mthd(&mut self, hw: &mut Hw, subc: u32, method: u32, data: &[u32], nonincr: bool) -> Result<()> {
        for chunk in data.chunks(MAX_PACKET) {
            self.reserve(hw, chunk.len() + 1)?;
            let h = if nonincr { pushbuf::nonincr(subc, method, chunk.len() as u32) } else { pushbuf::incr(subc, method, chunk.len() as u32) };
            self.pb_word(h);
            for &w in chunk {
                self.pb_word(w);
            }
        }
        Ok(())
    }

    /// Submit the pending segment: GPFIFO entry, then GP_PUT through BAR1 (the doorbell).
    pub fn kick(&mut self, hw: &mut Hw) -> Result<()> {
        if self.pb_put == self.seg_start {
            return Ok(());
        }
        let next = (self.gp_put + 1) % GP_ENTRIES;
        self.wait_gp(hw, |ch| next != ch.gp_get)?;
        let words = ((self.pb_put - self.seg_start) / 4) as u32;
        let e = gpfifo::entry(self.pb_va + self.seg_start as u64, words);
        let off = self.gp_put as usize * gpfifo::ENTRY_SIZE as usize;
        self.gp.write32_volatile(off, e as u32);
        self.gp.write32_volatile(off + 4, (e >> 32) as u32);
        self.gp_seg[self.gp_put as usize] = (self.seg_start, self.pb_put);
        self.gp_put = next;
        self.seg_start = self.pb_put;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        hw.bar_wr(Bar::Bar1, self.userd_bar1 + userd::GP_PUT as u64, self.gp_put);
        self.doorbells += 1;
        Ok(())
    }

    /// GP_PUT as last submitted.
    pub fn gp_put(&self) -> u32 {
        self.gp_put
    }

    /// Writes the current GP_PUT to the doorbell again (PFIFO re-reads GP_PUT from USERD).
    pub fn ring(&self, hw: &mut Hw) {
        hw.bar_wr(Bar::Bar1, self.userd_bar1 + userd::GP_PUT as u64, self.gp_put);
    }

    /// Add the channel to PFIFO's channel table (nouveau's order: CHAN word, then STATE).
    pub fn enable(&self, hw: &mut Hw) {
        hw.wr(pfifo::ChanInst::offset(self.chid), pfifo::ChanInst::bound(self.inst).raw());
        hw.wr(pfifo::ChanState::offset(self.chid), pfifo::ChanState::INITIAL.raw());
    }

    /// Teardown steps 1-2 (§8.5): not runnable, kick, wait for the read-back.
    pub fn disable_and_kick(&self, hw: &mut Hw) -> Result<()> {
        let state = pfifo::ChanState::from_raw(hw.rd(pfifo::ChanState::offset(self.chid)));
        hw.wr(pfifo::ChanState::offset(self.chid), state.with_runnable(false).raw());
        hw.wr(pfifo::KICK, self.chid);
        let chid = self.chid;
        hw.wait(pfifo::KICK, "channel kick", move |v| v == chid).map(|_| ())
    }
}

/// Write a runlist into `buf` (VRAM in the pool) and commit it.
pub fn commit_runlist(hw: &mut Hw, pool: &Pool, buf: u64, chids: &[u32]) -> Result<()> {
    let words: Vec<u32> = chids.iter().flat_map(|&c| [c, pfifo::RUNLIST_ENTRY_WORD1]).collect();
    write_words(hw, pool, Access::Bar3, buf, &words);
    hw.bar_flush()?;
    hw.wr(pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(buf).with_target(target::VRAM).raw());
    hw.wr(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(chids.len() as u32).raw());
    hw.wait(pfifo::RunlistStatus::OFFSET, "runlist update", |v| !pfifo::RunlistStatus::from_raw(v).pending()).map(|_| ())
}

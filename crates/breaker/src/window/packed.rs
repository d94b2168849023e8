//! Outcome codes and running totals packed into one `u64`.
//!
//! Three counts (calls, failures, slow calls) share one word as 21-bit
//! fields, so one `fetch_add` updates all three and one load reads a
//! consistent triple. Deltas may be negative (an evicted failure); adding a
//! packed delta is plain wrapping addition because packing is linear modulo
//! 2^64. Decoding reads each field as a *signed* value in [-2^20, 2^20), so a
//! transiently negative field (two writers finishing out of order) decodes
//! exactly instead of borrowing garbage from its neighbour; negatives are then
//! clamped to zero.

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const SIGN_BIT: u64 = 1 << (FIELD_BITS - 1);

/// One recorded outcome as stored in a window slot: bit 0 "a call is here",
/// bit 1 "it failed", bit 2 "it was slow". 0 is an empty slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code(pub(crate) u8);

impl Code {
    pub(crate) const EMPTY: Code = Code(0);

    pub(crate) fn new(failure: bool, slow: bool) -> Code {
        Code(1 | (u8::from(failure) << 1) | (u8::from(slow) << 2))
    }

    pub(crate) fn is_failure(self) -> bool {
        self.0 & 2 != 0
    }

    pub(crate) fn is_slow(self) -> bool {
        self.0 & 4 != 0
    }

    /// This code's contribution to the packed totals.
    #[inline]
    pub(crate) fn packed(self) -> u64 {
        let c = u64::from(self.0);
        (c & 1) | (((c >> 1) & 1) << FIELD_BITS) | (((c >> 2) & 1) << (2 * FIELD_BITS))
    }
}

/// Totals of a window: how many calls it holds, how many failed, how many
/// were slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    /// Decodes a packed word (see the module docs).
    #[inline]
    pub(crate) fn unpack(word: u64) -> Counts {
        let (calls, rest) = take_signed(word);
        let (failures, rest) = take_signed(rest);
        let (slow, _) = take_signed(rest);
        Counts {
            calls: clamp(calls),
            failures: clamp(failures),
            slow: clamp(slow),
        }
    }

    /// Builds totals from signed counts, clamping transient negatives.
    pub(crate) fn from_signed(calls: i64, failures: i64, slow: i64) -> Counts {
        Counts {
            calls: clamp(calls),
            failures: clamp(failures),
            slow: clamp(slow),
        }
    }
}

/// Splits the lowest field off `word` as a signed value; returns it and the
/// remaining fields shifted down.
#[inline]
fn take_signed(word: u64) -> (i64, u64) {
    let low = word & FIELD_MASK;
    // Sign-extend the 21-bit field.
    let value = if low & SIGN_BIT != 0 {
        (low | !FIELD_MASK) as i64
    } else {
        low as i64
    };
    // Removing the field's signed value first makes the borrow it caused in
    // the upper fields disappear.
    (value, word.wrapping_sub(value as u64) >> FIELD_BITS)
}

fn clamp(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack_signed(c: i64, f: i64, s: i64) -> u64 {
        (c as u64)
            .wrapping_add((f as u64).wrapping_shl(FIELD_BITS))
            .wrapping_add((s as u64).wrapping_shl(2 * FIELD_BITS))
    }

    #[test]
    fn codes_pack_into_their_fields() {
        let slow_failure = Code::new(true, true);
        assert!(slow_failure.is_failure() && slow_failure.is_slow());
        assert_eq!(
            Counts::unpack(slow_failure.packed()),
            Counts {
                calls: 1,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(Code::EMPTY.packed(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any sequence of signed deltas whose running fields stay in range
        /// decodes to exactly the sum, even when a field dips below zero.
        #[test]
        fn wrapping_sums_of_deltas_decode_exactly(
            deltas in proptest::collection::vec((-3i64..=3, -3i64..=3, -3i64..=3), 0..200)
        ) {
            let mut word = 0u64;
            let (mut c, mut f, mut s) = (0i64, 0i64, 0i64);
            for (dc, df, ds) in deltas {
                c += dc; f += df; s += ds;
                word = word.wrapping_add(pack_signed(dc, df, ds));
                let (vc, rest) = take_signed(word);
                let (vf, rest) = take_signed(rest);
                let (vs, _) = take_signed(rest);
                prop_assert_eq!((vc, vf, vs), (c, f, s));
                prop_assert_eq!(Counts::unpack(word), Counts::from_signed(c, f, s));
            }
        }
    }
}

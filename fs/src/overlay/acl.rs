//! POSIX ACL inheritance at creation (what ext4 does in `posix_acl_create`):
//! a new entry in a directory with a default ACL gets that ACL as its access
//! ACL, masked by the requested mode, and the mode follows the ACL; new
//! directories inherit the default ACL too. Without a default ACL the umask
//! applies. The kernel (FUSE_POSIX_ACL) enforces ACLs and caches them; the
//! daemon stores them as the xattrs `system.posix_acl_{access,default}`.
//!
//! Xattr format: `version u32 = 2`, then entries `tag u16, perm u16, id u32`
//! (little-endian).

const ACL_VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// An ACL: `(tag, perm, id)` entries.
pub type Acl = Vec<(u16, u16, u32)>;

/// Decode an ACL xattr value; `None` if malformed.
pub fn parse(b: &[u8]) -> Option<Acl> {
    decode(b)
}

/// The access ACL and mode of a new entry created with `mode` (no umask) in a
/// directory whose default ACL is `default`: `(None, mode)` when the result is
/// equivalent to the mode alone. (Directories also inherit `default` itself.)
pub fn create(default: &Acl, mode: u32) -> (Option<Acl>, u32) {
    match masq(default.clone(), mode) {
        Some((entries, mode, true)) => (Some(entries), mode),
        Some((_, mode, false)) => (None, mode),
        None => (None, mode),
    }
}

/// Whether the ACL says no more than permission bits do (only the owner,
/// group and other entries): ext4 then keeps the mode and no ACL.
pub fn is_minimal(acl: &Acl) -> bool {
    acl.iter().all(|e| matches!(e.0, USER_OBJ | GROUP_OBJ | OTHER))
}

/// The permission bits an access ACL sets (posix_acl_equiv_mode): owner from
/// USER_OBJ, group from MASK (GROUP_OBJ when there is no mask), other from
/// OTHER. The kernel leaves this update to a FUSE filesystem.
pub fn mode_bits(acl: &Acl) -> u32 {
    let perm = |t: u16| acl.iter().find(|e| e.0 == t).map_or(0, |e| u32::from(e.1 & 7));
    let group = if acl.iter().any(|e| e.0 == MASK) { perm(MASK) } else { perm(GROUP_OBJ) };
    (perm(USER_OBJ) << 6) | (group << 3) | perm(OTHER)
}

/// chmod of an inode with an access ACL (posix_acl_chmod): the owner, mask
/// (GROUP_OBJ without a mask) and other entries take the new mode's bits.
pub fn chmod(acl: &mut Acl, mode: u32) {
    let has_mask = acl.iter().any(|e| e.0 == MASK);
    for e in acl.iter_mut() {
        match e.0 {
            USER_OBJ => e.1 = ((mode >> 6) & 7) as u16,
            MASK => e.1 = ((mode >> 3) & 7) as u16,
            GROUP_OBJ if !has_mask => e.1 = ((mode >> 3) & 7) as u16,
            OTHER => e.1 = (mode & 7) as u16,
            _ => {}
        }
    }
}

fn masq(mut entries: Acl, mode: u32) -> Option<(Acl, u32, bool)> {
    let mut mode = mode;
    let mut not_equiv = false;
    let (mut group_obj, mut mask) = (None, None);
    for (i, e) in entries.iter_mut().enumerate() {
        match e.0 {
            USER_OBJ => {
                e.1 &= ((mode >> 6) & 7) as u16;
                mode &= (u32::from(e.1) << 6) | !0o700;
            }
            USER | GROUP => not_equiv = true,
            GROUP_OBJ => group_obj = Some(i),
            OTHER => {
                e.1 &= (mode & 7) as u16;
                mode &= u32::from(e.1) | !0o007;
            }
            MASK => {
                mask = Some(i);
                not_equiv = true;
            }
            _ => return None,
        }
    }
    let g = mask.or(group_obj)?;
    entries[g].1 &= ((mode >> 3) & 7) as u16;
    mode &= (u32::from(entries[g].1) << 3) | !0o070;
    Some((entries, mode & 0o7777, not_equiv))
}

fn decode(b: &[u8]) -> Option<Acl> {
    if b.len() < 4 || (b.len() - 4) % 8 != 0 || u32::from_le_bytes(b[..4].try_into().ok()?) != ACL_VERSION {
        return None;
    }
    Some(
        b[4..]
            .chunks(8)
            .map(|c| (u16::from_le_bytes([c[0], c[1]]), u16::from_le_bytes([c[2], c[3]]), u32::from_le_bytes([c[4], c[5], c[6], c[7]])))
            .collect(),
    )
}

/// Encode an ACL as its xattr value.
pub fn encode(e: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = ACL_VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in e {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherits_like_ext4() {
        // default: user::rwx user:65534:rwx group::r-x mask::rwx other::r-x
        let d = vec![(USER_OBJ, 7, u32::MAX), (USER, 7, 65534), (GROUP_OBJ, 5, u32::MAX), (MASK, 7, u32::MAX), (OTHER, 5, u32::MAX)];
        let (acl, mode) = create(&d, 0o666);
        assert_eq!(mode, 0o664, "mask limited by the requested group bits");
        let acl = acl.unwrap();
        assert_eq!(acl[1], (USER, 7, 65534), "named entries are kept as they are");
        assert_eq!(acl[3], (MASK, 6, u32::MAX));
        assert_eq!(parse(&encode(&acl)), Some(acl));
        // A minimal default ACL is equivalent to a mode: no access ACL.
        let min = vec![(USER_OBJ, 7, u32::MAX), (GROUP_OBJ, 5, u32::MAX), (OTHER, 0, u32::MAX)];
        assert_eq!(create(&min, 0o666), (None, 0o640));
        assert!(parse(b"junk").is_none());
    }

    #[test]
    fn mode_and_acl_stay_in_step() {
        let mut a = vec![(USER_OBJ, 6, u32::MAX), (USER, 7, 1000), (GROUP_OBJ, 5, u32::MAX), (MASK, 4, u32::MAX), (OTHER, 0, u32::MAX)];
        assert_eq!(mode_bits(&a), 0o640, "group bits come from the mask");
        chmod(&mut a, 0o751);
        assert_eq!((mode_bits(&a), a[2].1), (0o751, 5), "chmod sets the mask, not GROUP_OBJ");
        let mut m = vec![(USER_OBJ, 6, u32::MAX), (GROUP_OBJ, 4, u32::MAX), (OTHER, 4, u32::MAX)];
        assert!(is_minimal(&m) && !is_minimal(&a));
        chmod(&mut m, 0o600);
        assert_eq!(mode_bits(&m), 0o600);
    }
}

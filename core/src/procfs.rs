//! Reading the kernel's generated files (`/proc`, `/sys`). They report a
//! size of 0, so a plain `read_to_string` starts from a 32-byte read and
//! doubles: ten reads for `/proc/self/mountinfo`, each a trip through the
//! kernel's formatter. One buffer of a few pages reads them in one call
//! (and the end-of-file read).

use std::io::Read;
use std::path::Path;

/// The whole text of the generated file `path`.
pub fn read_to_string(path: impl AsRef<Path>) -> std::io::Result<String> {
    read_file_to_string(&mut std::fs::File::open(path)?)
}

/// [`read_to_string`] of a file already open, from where it stands.
pub fn read_file_to_string(f: &mut std::fs::File) -> std::io::Result<String> {
    let mut b: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        if b.len() == b.capacity() {
            b.reserve(b.capacity());
        }
        let len = b.len();
        let spare = b.capacity() - len;
        b.resize(len + spare, 0);
        match f.read(&mut b[len..]) {
            Ok(0) => {
                b.truncate(len);
                break;
            }
            Ok(n) => b.truncate(len + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => b.truncate(len),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_generated_files_whole() {
        // Other test threads may mount meanwhile: every line whole, the root there.
        let mi = super::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(mi.ends_with('\n') && mi.lines().all(|l| l.contains(" - ")));
        assert!(mi.lines().any(|l| l.split(' ').nth(4) == Some("/")));
        let big = super::read_to_string("/proc/self/maps").unwrap();
        assert!(big.ends_with('\n'));
        let id = super::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(id.trim().len(), 36);
        assert!(super::read_to_string("/proc/self/no-such-file").is_err());
    }
}

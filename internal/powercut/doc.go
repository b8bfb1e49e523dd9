// Package powercut is a FUSE file system for tests that simulates a
// power cut, as opposed to a kill -9: what a program wrote but did not
// make durable with fsync is lost.
//
// # Use
//
// Mount passes a backing directory through at a mount point. The test
// runs the code under test against the mount point, then calls Cut. Cut
// unmounts the file system (forcefully: open files are cut off and give
// errors afterwards) and leaves the backing directory as a disk would be
// once power returns, so the test can "reboot" by reopening what is in
// the backing directory (directly, or through a new Mount) and check
// that the code recovers. Unmount is a clean shutdown instead: everything
// written is kept. Code still running after Cut gets errors on the files
// it holds open, but a path under the mount point then leads to the bare
// mount point directory; with WithDeadMountAfterCut the mount point stays
// mounted and fails every access until Unmount detaches it. Require
// skips a test, or fails it under CI, when the machine cannot mount FUSE
// file systems.
//
// It is internal and for tests only: it needs root and /dev/fuse, and it
// keeps in memory every pre-image that it may have to restore.
//
// # The model
//
// Every operation is applied to the backing directory at once, so reads,
// stat and the kernel see ordinary behaviour. Alongside, the file system
// keeps an undo log of what is not durable yet:
//
//   - A file's data: every write, truncate or size change, and fallocate
//     since the file's last fsync or fdatasync (through any handle of the
//     file, under any of its names: data belongs to the inode). The log
//     keeps the original bytes that a change overwrote and the size at
//     the last fsync. Cut puts them back: unsynced data is reverted to
//     its last synced content and size.
//   - A directory's entries: files, directories, symlinks, device nodes
//     and hard links created in it, and unlink, rmdir and rename in it,
//     since the directory's last fsync (an fsync of an open handle of the
//     directory). A rename changes two directories and is durable only
//     once both have been synced after it (one fsync when they are the
//     same); until then Cut undoes it whole, so the file is at exactly
//     one of its two names, the old one. Cut removes entries created in
//     an unsynced directory (recursively for a directory, whatever was
//     synced inside it: that is lost with its name), puts back entries
//     unlinked or removed there (an unlinked file comes back with its
//     synced content: the file system keeps a hard link to it in a hidden
//     stash until the unlink is durable), and undoes renames.
//
// Directory changes are undone in reverse order. When a directory fsync
// makes a change durable, earlier pending changes to the same names
// (same directory and name) become durable with it, as a journal would
// commit them: undoing never contradicts a durable change, and each name
// that Cut restores gets a value it really had.
//
// With WithTornWrites, Cut does not drop a file's unsynced writes whole:
// like LazyFS's torn writes, the file's writes since its last fsync, in
// order and split at multiples of the unit (512 bytes or 4 KiB, the
// sector or page), are applied up to a random cut point: a prefix of
// them, from none to all, survives. A truncate or fallocate counts as one
// unit.
//
// With nothing pending, Cut changes nothing.
//
// # Limits
//
// As POSIX has it, an fsync of a file makes its data durable, not its
// name: a file created and fsynced in an unsynced directory is gone after
// Cut. Real file systems with a journal are often kinder (ext4 commits a
// rename with either directory, and an fsync may commit other pending
// changes); this model is the strict one that portable code must survive.
//
// Not modelled: metadata other than size (mode, owner, times and
// extended attributes stay as they are in the backing directory; times
// of restored entries are not restored), the content of a symlink or
// device node beyond its entry, O_TMPFILE (refused with EOPNOTSUPP),
// copy_file_range offload (refused, so the kernel copies with plain reads
// and writes, which are logged), and backing directories that span
// several file systems (files are identified by inode number). Data
// written through a shared mmap counts once the kernel writes it back to
// the file system (at the latest by fsync or msync); what it had not
// written back at Cut is lost, as it would be.
//
// While mounted, the backing directory holds a hidden stash directory,
// invisible through the mount and removed by Cut and Unmount, whose hard
// links are left out of the link counts that stat reports through the
// mount. The backing directory must not be changed other than through the
// mount while mounted. A file that Cut brings back by undoing an unlink
// is the same inode, with its synced content.
package powercut

package fs

import (
	"agfs/btree"
	"agfs/dir"
	"agfs/layout"
)

// ExtentTreeConfig, DirConfig and XattrTreeConfig describe inode ino's
// B+trees opened for reading: any change through them fails with EROFS.
// fsck opens the trees with them, so it reads them exactly as fs does; fs
// adds its allocator and goal to change them.
func ExtentTreeConfig(sb *layout.Superblock, ino uint64) btree.Config {
	return btree.Config{Magic: layout.MagicExtentNode, Owner: ino, Seed: sb.Seed(), BlockSize: int(sb.BlockSize), Alloc: noAlloc{}}
}

// DirConfig: see ExtentTreeConfig.
func DirConfig(sb *layout.Superblock, ino uint64) dir.Config {
	return dir.Config{Owner: ino, Seed: sb.Seed(), HashSeed: sb.DirHashSeed, BlockSize: int(sb.BlockSize), Alloc: noAlloc{}}
}

// XattrTreeConfig: see ExtentTreeConfig. (xattr.Open sets the magic.)
func XattrTreeConfig(sb *layout.Superblock, ino uint64) btree.Config {
	return btree.Config{Owner: ino, Seed: sb.Seed(), BlockSize: int(sb.BlockSize), Alloc: noAlloc{}}
}

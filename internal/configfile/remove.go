package configfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Remove deletes path from its (read-only) partition the way Replace
// writes: remounted read-write only for the removal, the directory synced.
// An update bundle dropped on the config partition is removed this way once
// it is installed.
func (w Writer) Remove(path string) error {
	return w.rename(path, "")
}

// Rename renames path to newName in the same directory, e.g. a refused
// update bundle to NAME.refused so it is not tried at every boot.
func (w Writer) Rename(path, newName string) error {
	return w.rename(path, newName)
}

func (w Writer) rename(path, newName string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	target := filepath.Join(dir, filepath.Base(abs))
	return w.writable(dir, target, func() error {
		var err error
		if newName == "" {
			err = os.Remove(target)
		} else {
			err = os.Rename(target, filepath.Join(dir, newName))
		}
		if err != nil {
			return err
		}
		d, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer d.Close()
		if err := d.Sync(); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		return nil
	})
}

package natstest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// crashImage copies dir, as it is on disk now, into a new sibling directory
// and returns its path. Files that vanish while it copies (the server removes
// blocks and temp files as it goes) are left out, as they would be after a
// crash a moment later.
func crashImage(dir string) (string, error) {
	image, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".crash-*")
	if err != nil {
		return "", fmt.Errorf("copy store: %w", err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(image, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type().IsRegular():
			return copyFile(dst, path)
		default:
			return nil // the store holds only directories and regular files
		}
	})
	if err != nil {
		os.RemoveAll(image)
		return "", fmt.Errorf("copy store: %w", err)
	}
	return image, nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// replaceDir puts image in place of dir.
func replaceDir(dir, image string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("replace store: %w", err)
	}
	if err := os.Rename(image, dir); err != nil {
		return fmt.Errorf("replace store: %w", err)
	}
	return nil
}

module github.com/mdtap/mdtap

go 1.26

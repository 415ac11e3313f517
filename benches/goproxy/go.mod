module llamactl/benches/goproxy

go 1.19

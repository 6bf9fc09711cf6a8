module lbd

go 1.26.8

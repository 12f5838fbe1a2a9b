FROM alpine as build
from alpine AS other
from alpine as fine

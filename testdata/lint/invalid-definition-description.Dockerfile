# check=experimental=InvalidDefinitionDescription
# compiles the code
FROM alpine AS build
# VERSION the release to build
ARG VERSION=1
# some unrelated note
ARG OTHER=2

FROM scratch AS base
COPY Dockerfile /foobar
COPY . .
FROM base
COPY --from=base /foobar /Dockerfile

FROM alpine AS BuildStage

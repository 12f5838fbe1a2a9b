# check=skip=StageNameCasing,JSONArgsRecommended
FROM alpine AS Build
CMD run
# check=skip=MaintainerDeprecated
MAINTAINER me
MAINTAINER you
